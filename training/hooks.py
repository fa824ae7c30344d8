"""Where other apps plug into a run's life, so that training imports none of them.

- `run_finished` is sent once a run reaches a final status, whoever moved it
  there: the worker, a cancel, or the reaper giving up on a dead worker.
- State groups: extra channel-layer groups that receive a run's state
  messages (a study's page follows its trials' runs).
- Epoch hooks: a factory that returns a training-loop `on_epoch` callable for
  a run, or None (a study prunes its trials through one).
"""

from collections.abc import Callable

from django.dispatch import Signal

# Sent with `run` (the Run row as it was stored) after the final status is committed.
run_finished = Signal()

_state_group_providers: list[Callable] = []
_epoch_hook_factories: list[Callable] = []


def register_state_groups(provider: Callable) -> None:
    """`provider(run)` returns a list of extra group names for the run's state messages."""
    if provider not in _state_group_providers:
        _state_group_providers.append(provider)


def extra_state_groups(run) -> list[str]:
    groups = []
    for provider in _state_group_providers:
        groups.extend(provider(run))
    return groups


def register_epoch_hook(factory: Callable) -> None:
    """`factory(run)` returns an on_epoch callable for the training loop, or None."""
    if factory not in _epoch_hook_factories:
        _epoch_hook_factories.append(factory)


def epoch_hook(run):
    """Return the on_epoch callable for a run: every registered hook in turn, the first stop reason wins."""
    hooks = [hook for hook in (factory(run) for factory in _epoch_hook_factories) if hook is not None]
    if not hooks:
        return None

    def on_epoch(epoch: int, metrics: dict) -> str | None:
        for hook in hooks:
            reason = hook(epoch, metrics)
            if reason:
                return reason
        return None

    return on_epoch
