"""Per-prompt fault directives.

Tests share one simulator, so each needs faults that touch only its own tasks, without changing
the global fault mix. A directive is a `#word` anywhere in the prompt:

| directive | effect |
|---|---|
| `#policy` (the configured `policy_keyword`) | fails `content_policy_violation` at ~60 % of generation |
| `#fail=<code>` | every task with this prompt fails with `<code>` |
| `#fail=<code>x<N>` | the first N tasks created with this exact prompt fail; later ones complete |
| `#nocallback` | callbacks for the task are dropped |
| `#dupcallback` | the callback is delivered twice, the second after a short delay |
| `#lost-response` | the first create with this exact prompt creates the task but the response is lost |
| `#slow-answer=<s>` | the create makes the task, then answers `<s>` real seconds later |
| `#proxy-502` | the first create with this exact prompt is answered a bare 502 by a proxy in front; no task is made |
| `#truncate` | downloads of the result stop after half the body (Content-Length stays full) |
| `#cut=<bytes>` | the first download of the result stops after `<bytes>` body bytes; later ones are whole |
| `#norange` | downloads of the result ignore `Range` (200 with the whole body), as some hosts do |
| `#size=<bytes>` | the served result is padded to exactly `<bytes>` with an MP4 `free` box |
| `#gen=<seconds>` | simulated seconds from create to the end state |
| `#reserve=<credits>` | the task reserves (and, completed, charges) `<credits>`, not its billing rule's figure |
| `#rate=<n>[k or m]` | downloads of the result are paced at n bytes (k: 1000, m: 1000000) per real second |

Download pacing is in real (wall-clock) seconds, not simulated ones: it stands for the link
between the CDN and us, whose speed the time scale does not change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FAIL = re.compile(r"#fail=([a-z][a-z0-9_]*?)(?:x(\d+))?(?![a-z0-9_])", re.IGNORECASE)
_SIZE = re.compile(r"#size=(\d+)\b")
_GEN = re.compile(r"#gen=(\d+(?:\.\d+)?)\b")
_CUT = re.compile(r"#cut=(\d+)\b")
_SLOW_ANSWER = re.compile(r"#slow-answer=(\d+(?:\.\d+)?)\b")
_RESERVE = re.compile(r"#reserve=(\d+(?:\.\d+)?)\b")
_RATE = re.compile(r"#rate=(\d+)([km]?)(?![a-z0-9])", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 1000, "m": 1000_000}


@dataclass(frozen=True)
class Directives:
    policy: bool = False
    fail_code: str | None = None
    fail_first: int | None = None  # None: every task fails; N: only the first N with this prompt
    no_callback: bool = False
    dup_callback: bool = False
    lost_response: bool = False
    proxy_502: bool = False
    truncate: bool = False
    size: int | None = None
    gen_seconds: float | None = None
    rate: int | None = None  # download bytes per second; None = the fault config's
    cut_first_after: int | None = None
    no_range: bool = False
    reserve: float | None = None  # credits the task reserves; None = the model's billing rule
    slow_answer: float | None = None  # real seconds the create's answer waits after the task exists


def parse_directives(prompt: str, policy_keyword: str) -> Directives:
    lowered = prompt.lower()
    fail = _FAIL.search(prompt)
    size = _SIZE.search(prompt)
    gen = _GEN.search(prompt)
    rate = _RATE.search(prompt)
    cut = _CUT.search(prompt)
    reserve = _RESERVE.search(prompt)
    slow_answer = _SLOW_ANSWER.search(prompt)
    return Directives(
        policy=bool(policy_keyword) and policy_keyword.lower() in lowered,
        fail_code=fail.group(1).lower() if fail else None,
        fail_first=int(fail.group(2)) if fail and fail.group(2) else None,
        no_callback="#nocallback" in lowered,
        dup_callback="#dupcallback" in lowered,
        lost_response="#lost-response" in lowered,
        proxy_502="#proxy-502" in lowered,
        truncate="#truncate" in lowered,
        size=int(size.group(1)) if size else None,
        gen_seconds=float(gen.group(1)) if gen else None,
        cut_first_after=int(cut.group(1)) if cut else None,
        no_range="#norange" in lowered,
        reserve=float(reserve.group(1)) if reserve else None,
        slow_answer=float(slow_answer.group(1)) if slow_answer else None,
        rate=int(rate.group(1)) * _RATE_UNITS[rate.group(2).lower()] if rate and int(rate.group(1)) else None,
    )
