"""Pure market logic, free of I/O, clocks and Rx: candle building, book diffs, position ledgers."""
