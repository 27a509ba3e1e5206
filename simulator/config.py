"""Settings fixed at start (`SimulatorSettings`) and the fault mix changeable at run time
(`FaultConfig`, served at `/_sim/config`).

Every rate is a probability in 0..1 drawn from the simulator's seeded RNG, so a chaos run with
the same seed and the same request order replays the same faults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gptimage2._classify import TRANSIENT_CODES

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
# The HTTP failures the contract tells clients to retry (docs/provider-contract.md, "HTTP errors").
FaultStatus = Literal[429, 500, 502, 503]
FAULT_STATUSES: list[FaultStatus] = [429, 500, 502, 503]


class FaultConfig(BaseModel):
    """The fault mix. Unknown keys are refused (a typo must not silently disable a chaos run)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Prompts containing this text (case-insensitive) fail with `content_policy_violation` at
    # about 60 % of their generation time: "moderation outcomes can arrive late"
    # (docs/provider-contract.md, "Task object").
    policy_keyword: str = "#policy"
    policy_rate: Rate = 0.0
    # Share of tasks that end `failed` with one of `transient_codes` (contract: may retry).
    transient_rate: Rate = 0.0
    transient_codes: list[str] = Field(default_factory=lambda: sorted(TRANSIENT_CODES), min_length=1)
    # Create answered with an HTTP error. 429/503 are answered before processing (no task);
    # a 500/502 created the task first with probability `create_error_creates_task`, which is
    # exactly the ambiguity the contract warns about ("Create is not idempotent"); that one is
    # answered bare (a proxy's HTML page), the others in the gateway's error envelope.
    create_error_rate: Rate = 0.0
    create_error_statuses: list[FaultStatus] = Field(
        default_factory=lambda: list(FAULT_STATUSES), min_length=1
    )
    create_error_creates_task: Rate = 0.5
    get_error_rate: Rate = 0.0
    get_error_statuses: list[FaultStatus] = Field(default_factory=lambda: list(FAULT_STATUSES), min_length=1)
    retry_after_seconds: Annotated[int, Field(ge=0)] = 1
    # The task is created, then the connection is dropped before any response byte.
    create_response_lost_rate: Rate = 0.0
    callback_drop_rate: Rate = 0.0
    callback_duplicate_rate: Rate = 0.0
    # How many times a duplicated callback is delivered in all (`#dupcallback` too).
    callback_duplicate_copies: Annotated[int, Field(ge=2, le=10)] = 2
    callback_delay_seconds: NonNegative = 0.0
    # Hold terminal callbacks for `callback_reorder_window_seconds`, then deliver the batch in
    # reverse order of completion; a batch of one is followed by a stale (processing) snapshot.
    callback_reorder: bool = False
    callback_reorder_window_seconds: NonNegative = 1.0
    # Contract: "retries at most 3 times, after 1, 2 and 4 s"; tests shrink the delays.
    callback_backoff_scale: NonNegative = 1.0
    # Contract: "The receiver must answer 2xx within 10 s".
    callback_timeout_seconds: Annotated[float, Field(gt=0.0)] = 10.0
    download_bytes_per_second: Annotated[int, Field(ge=0)] = 0  # 0 = unlimited
    download_truncate_rate: Rate = 0.0
    # Simulated seconds from create to the end state; None = the realistic distribution.
    generation_time_seconds: NonNegative | None = None

    def merged(self, patch: dict[str, Any]) -> FaultConfig:
        """A copy with `patch` applied and validated (PATCH semantics)."""
        return FaultConfig.model_validate({**self.model_dump(), **patch})


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "reliable-video" / "sim-videos"


@dataclass
class SimulatorSettings:
    """What `python -m simulator` flags set; fixed for the life of a simulator."""

    api_key: str = "sim-key"
    time_scale: float = 1.0
    # One switch for callback hosts and image hosts: the real provider refuses private,
    # loopback and link-local addresses for both (seed: "Internal/private network IPs blocked").
    allow_private: bool = False
    # CA bundle that outbound HTTPS (callbacks, image fetches) trusts; None = system store.
    callback_cafile: str | None = None
    # Base of result URLs; None = the scheme and host the create request came in on.
    public_base_url: str | None = None
    seed: int | None = None
    # The key's credit balance before any charge (`GET /v1/credits`: remaining = this - used).
    credit_allowance: float = 1_000_000.0
    cache_dir: Path = field(default_factory=default_cache_dir)
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be positive")
        if not self.api_key:
            raise ValueError("api_key must not be empty")

    def __repr__(self) -> str:  # the key must never reach a log line
        return (
            f"SimulatorSettings(time_scale={self.time_scale}, allow_private={self.allow_private}, "
            f"seed={self.seed}, cache_dir={str(self.cache_dir)!r})"
        )
