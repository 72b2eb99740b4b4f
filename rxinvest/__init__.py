"""rxinvest: the T-Invest API's live streams as RxPY Observables of typed events."""

__version__ = "0.1.0"
