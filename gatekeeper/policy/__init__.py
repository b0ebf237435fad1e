"""Tools for policy authors: test, check and replay a pack before it decides anything.

    gatekeeper policy test                          # opa test + the cases on both engines
    gatekeeper policy check                         # opa fmt, opa check --strict, built-ins
    gatekeeper policy replay --candidate DIR        # what would change on the recorded requests

    >>> from gatekeeper.policy import check_policies, run_policy_tests
    >>> run_policy_tests("policies", ["tests/cases/public.jsonl"]).ok   # doctest: +SKIP
    True

Shadow mode (a candidate evaluated beside the live pack on every request) is
an engine: :class:`gatekeeper.engines.ShadowEngine`, or ``shadow_policy_dir``
in the configuration. The ``opa`` binary and a real ``opa run --server`` on
loopback are in :mod:`gatekeeper.policy.opa_process`; the built-ins both
engines agree on in :mod:`gatekeeper.policy.builtins` (docs/policy-builtins.md).
"""

from gatekeeper.policy.builtins import ALLOWED_BUILTINS
from gatekeeper.policy.cases import Case, check_decision, load_cases
from gatekeeper.policy.check import CheckReport, check_policies
from gatekeeper.policy.replay import ReplayReport, replay
from gatekeeper.policy.testing import PolicyTestReport, run_policy_tests

__all__ = [
    "ALLOWED_BUILTINS",
    "Case",
    "CheckReport",
    "PolicyTestReport",
    "ReplayReport",
    "check_decision",
    "check_policies",
    "load_cases",
    "replay",
    "run_policy_tests",
]
