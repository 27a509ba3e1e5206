"""The simulator's own rules without a server: billing, timing, directives, the clock."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import av
import pytest

from gptimage2 import AspectRatio, CreateVideoRequest, Quality
from simulator.config import FaultConfig
from simulator.directives import parse_directives
from simulator.state import SimClock, Timeline, credits_for, mean_generation_seconds
from simulator.video import VideoCache, VideoSpec


def params(duration: int = 8, quality: str = "720p", audio: bool = True) -> CreateVideoRequest:
    return CreateVideoRequest(
        model="seedance-1.5-pro",
        prompt="p",
        duration=duration,
        quality=Quality(quality),
        aspect_ratio=AspectRatio.WIDE,
        generate_audio=audio,
    )


@pytest.mark.parametrize(
    ("duration", "quality", "audio", "credits"),
    [(8, "720p", True, 50), (8, "720p", False, 40), (4, "480p", False, 12), (12, "480p", True, 51)],
)
def test_credits_are_per_second_by_quality_plus_audio(
    duration: int, quality: str, audio: bool, credits: float
) -> None:
    assert credits_for(params(duration, quality, audio)) == credits


def test_generation_is_slower_for_720p_audio_and_longer_clips() -> None:
    example = mean_generation_seconds(params(8, "720p", True))
    assert 150 <= example <= 180  # the contract example estimates 165 s
    assert mean_generation_seconds(params(8, "480p", True)) < example
    assert mean_generation_seconds(params(8, "720p", False)) < example
    assert mean_generation_seconds(params(4, "720p", True)) < example
    assert mean_generation_seconds(params(4, "480p", False)) >= 20  # still tens of seconds


def test_drawn_timelines_are_seeded_and_bounded() -> None:
    assert Timeline.draw(params(), 0.0, random.Random(3), None, None) == Timeline.draw(
        params(), 0.0, random.Random(3), None, None
    )
    rng, mean = random.Random(1), mean_generation_seconds(params())
    for _ in range(500):
        timeline = Timeline.draw(params(), 0.0, rng, None, None)
        assert 0.5 * mean <= timeline.ends_at <= 2.5 * mean + 1e-9
        assert 0 <= timeline.processing_at <= 0.2 * timeline.ends_at + 1e-9


def test_policy_failure_lands_at_about_60_percent() -> None:
    timeline = Timeline.draw(params(), 0.0, random.Random(5), 1000.0, "content_policy_violation")
    generated = (timeline.ends_at - timeline.processing_at) / timeline.generation_seconds
    assert 0.55 <= generated <= 0.65


def test_directives_parse() -> None:
    parsed = parse_directives(
        "x #POLICY #fail=service_errorx2 #nocallback #dupcallback #lost-response #truncate #size=123 #gen=2.5",
        "#policy",
    )
    assert parsed.policy and (parsed.fail_code, parsed.fail_first) == ("service_error", 2)
    assert parsed.no_callback and parsed.dup_callback and parsed.lost_response and parsed.truncate
    assert (parsed.size, parsed.gen_seconds) == (123, 2.5)
    plain = parse_directives("a quiet lake at dawn", "#policy")
    assert plain == parse_directives("", "#policy") and plain.fail_code is None
    assert parse_directives("#fail=quota_exceeded", "#policy").fail_first is None
    cut = parse_directives("x #cut=1000 #norange", "#policy")
    assert (cut.cut_first_after, cut.no_range) == (1000, True) and not plain.no_range
    assert [parse_directives(f"x #rate={r}", "#policy").rate for r in ("200k", "3M", "512", "0")] == [
        200_000,
        3_000_000,
        512,
        None,
    ]


def test_clock_scales_and_advances() -> None:
    clock = SimClock(time_scale=1000.0)
    before = clock.now()
    clock.advance(3600)
    assert clock.now() - before >= 3600
    assert clock.real_seconds_until(clock.now() + 1000) <= 1.0


def test_config_merge_validates() -> None:
    merged = FaultConfig().merged({"policy_rate": 0.5})
    assert merged.policy_rate == 0.5 and merged.callback_backoff_scale == 1.0
    with pytest.raises(ValueError):
        FaultConfig().merged({"policy_rate": 2})
    with pytest.raises(ValueError):
        FaultConfig().merged({"typo_rate": 0.1})


def test_two_caches_sharing_a_directory_both_get_a_whole_file(tmp_path: Path) -> None:
    """As two simulator processes would: each encodes to a temp file and renames it."""
    spec, paths = VideoSpec(320, 180, 4, audio=True), []
    caches = [VideoCache(tmp_path), VideoCache(tmp_path)]
    threads = [threading.Thread(target=lambda c=cache: paths.append(c.ensure(spec))) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for cache in caches:
        cache.close()
    assert len(paths) == 2 and paths[0] == paths[1]
    assert [p.name for p in tmp_path.iterdir()] == [spec.file_name]
    with av.open(str(paths[0]), "r") as container:
        assert container.duration is not None and abs(container.duration / av.time_base - 4) <= 0.2
