"""The topic lifecycle table of protocol.topic, checked against the rules its module states."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rxinvest.protocol.topic import TRANSITIONS, WANTED, TopicEvent, TopicState, advance, next_state

S, E = TopicState, TopicEvent
TERMINAL = {S.REJECTED, S.FORGOTTEN}


def reachable(start: TopicState) -> set[TopicState]:
    seen, todo = {start}, [start]
    while todo:
        for after in TRANSITIONS[todo.pop()].values():
            if after not in seen:
                seen.add(after)
                todo.append(after)
    return seen


def test_every_state_is_reachable_and_every_life_can_end() -> None:
    assert set(TRANSITIONS) == set(TopicState)
    assert reachable(S.UNSENT) == set(TopicState)
    for state in TopicState:
        assert reachable(state) & TERMINAL, state  # no state a topic can never leave


def test_terminal_states_have_no_moves() -> None:
    assert {state for state, moves in TRANSITIONS.items() if not moves} == TERMINAL


def test_subscribers_come_and_go_only_across_the_wanted_line() -> None:
    """Rule 2: WANT enters the wanted states from outside, UNWANT leaves them, nothing else crosses
    the line but a reconnect, which keeps the wanted and forgets the rest."""
    for state, moves in TRANSITIONS.items():
        for event, after in moves.items():
            if event is E.WANT:
                assert state not in WANTED and after in WANTED
            elif event is E.UNWANT:
                assert state in WANTED and after not in WANTED
            elif event is E.RECONNECT:
                assert after is (S.UNSENT if state in WANTED else S.FORGOTTEN)
            elif after not in TERMINAL:
                assert (state in WANTED) == (after in WANTED), (state, event)


def test_a_move_the_table_lacks_is_a_bug_for_local_events_and_ignored_for_answers() -> None:
    with pytest.raises(AssertionError, match="no move from CONFIRMED on SEND"):
        advance(S.CONFIRMED, E.SEND)
    with pytest.raises(AssertionError):
        advance(S.REQUESTED, E.ACCEPT)  # answers go through next_state
    assert next_state(S.CONFIRMED, E.ACCEPT) is None  # an answer to a repeated request
    assert next_state(S.REQUESTED, E.ACCEPT) is S.CONFIRMED


@given(st.lists(st.sampled_from(list(TopicEvent)), max_size=30))
def test_any_sequence_of_events_stays_inside_the_table(events: list[TopicEvent]) -> None:
    state = S.UNSENT
    for event in events:
        after = next_state(state, event)
        if after is None:
            continue
        assert after in TRANSITIONS[state].values()
        state = after
        if state in TERMINAL:
            break
    assert state in TRANSITIONS
