"""The model profiles (gptimage2.profiles): one entry per model, the per-model validation of the
neutral request and its mapping to each model's wire fields. Fast: no server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gptimage2 import (
    KNOWN_MODELS,
    PROFILES,
    SEEDANCE_MODEL,
    AudioWire,
    CreateVideoRequest,
    ImageWire,
    VideoParams,
)

IMG = "https://images.example.com/a.png"
IMG2 = "https://images.example.com/b.png"


def test_the_model_list_is_the_profile_table() -> None:
    assert KNOWN_MODELS == tuple(PROFILES)
    assert set(KNOWN_MODELS) == {
        "seedance-1.5-pro",
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "kling-o1-image-to-video",
        "kling-v3-text-to-video",
        "kling-v3-image-to-video",
        "wan2.6-text-to-video",
        "wan2.6-image-to-video",
        "MiniMax-Hailuo-2.3",
        "MiniMax-Hailuo-2.3-Fast",
    }
    # The names the real gateway does not have are gone.
    assert not {"veo-3.1", "kling-o1"} & set(KNOWN_MODELS)


@pytest.mark.parametrize("model", KNOWN_MODELS)
def test_each_profile_defaults_are_allowed_by_its_own_rules(model: str) -> None:
    profile = PROFILES[model]
    images = [IMG, IMG2][: profile.min_images]
    params = VideoParams(model=model, prompt="p", image_urls=images)
    assert (params.duration, params.quality, params.aspect_ratio, params.generate_audio) == (
        profile.default_duration,
        profile.default_quality,
        profile.default_aspect_ratio,
        profile.default_audio,
    )
    body = CreateVideoRequest(**params.model_dump()).wire_body()
    assert set(body) <= set(profile.wire_fields)


def test_seedance_keeps_todays_request_body_exactly() -> None:
    request = CreateVideoRequest(prompt="p", callback_url="https://cb.example.com/x")
    assert request.wire_body() == {
        "model": SEEDANCE_MODEL,
        "prompt": "p",
        "duration": 5,
        "quality": "720p",
        "aspect_ratio": "16:9",
        "generate_audio": True,
        "image_urls": [],
        "callback_url": "https://cb.example.com/x",
    }
    assert request.wire_body() == request.model_dump(mode="json", exclude_none=True)


def test_seedance_keeps_todays_billing() -> None:
    billing = PROFILES[SEEDANCE_MODEL].billing
    assert billing.credits(VideoParams(prompt="p", duration=8)) == 50  # the contract's example
    assert billing.credits(VideoParams(prompt="p", duration=4, quality="480p", generate_audio=False)) == 12


def test_kling_v3_image_to_video_sends_start_and_end_frames_and_sound() -> None:
    request = CreateVideoRequest(
        model="kling-v3-image-to-video", prompt="p", image_urls=[IMG, IMG2], generate_audio=True, duration=7
    )
    body = request.wire_body()
    assert body["image_start"] == IMG and body["image_end"] == IMG2 and body["sound"] == "on"
    assert not {"image_urls", "generate_audio", "aspect_ratio"} & set(body)
    silent = CreateVideoRequest(model="kling-v3-image-to-video", prompt="p", image_urls=[IMG])
    assert silent.wire_body()["sound"] == "off" and "image_end" not in silent.wire_body()


def test_veo_sends_n_and_generation_type() -> None:
    text = CreateVideoRequest(model="veo-3.1-generate-preview", prompt="p", n=2).wire_body()
    assert (text["n"], text["generation_type"], text["generate_audio"]) == (2, "TEXT", True)
    frames = CreateVideoRequest(model="veo-3.1-fast-generate-preview", prompt="p", image_urls=[IMG, IMG2])
    assert (frames.wire_body()["generation_type"], frames.wire_body()["n"]) == ("FIRST&LAST", 1)


def test_silent_models_send_no_audio_field() -> None:
    for model, images in (("wan2.6-text-to-video", []), ("MiniMax-Hailuo-2.3-Fast", [IMG])):
        body = CreateVideoRequest(model=model, prompt="p", image_urls=images).wire_body()
        assert not {"generate_audio", "sound"} & set(body)
        assert PROFILES[model].audio is AudioWire.NONE


@pytest.mark.parametrize(
    ("model", "changes", "field", "allowed"),
    [
        ("seedance-1.5-pro", {"duration": 13}, "duration", "4 to 12"),
        ("seedance-1.5-pro", {"quality": "1080p"}, "quality", "480p, 720p"),
        ("veo-3.1-generate-preview", {"duration": 5}, "duration", "4, 6, 8"),
        ("veo-3.1-generate-preview", {"aspect_ratio": "1:1"}, "aspect_ratio", "16:9, 9:16"),
        ("veo-3.1-generate-preview", {"n": 5}, "n", "between 1 and 4"),
        ("seedance-1.5-pro", {"n": 2}, "n", "between 1 and 1"),
        ("kling-o1-image-to-video", {"image_urls": []}, "image_urls", "1 to 2 images"),
        ("kling-o1-image-to-video", {"image_urls": [IMG], "quality": "720p"}, "quality", "no quality"),
        (
            "kling-o1-image-to-video",
            {"image_urls": [IMG], "generate_audio": True},
            "generate_audio",
            "no audio",
        ),
        ("kling-v3-text-to-video", {"duration": 16}, "duration", "3 to 15"),
        ("kling-v3-text-to-video", {"image_urls": [IMG]}, "image_urls", "no images"),
        ("kling-v3-image-to-video", {"image_urls": [IMG], "aspect_ratio": "16:9"}, "aspect_ratio", "omit"),
        ("wan2.6-image-to-video", {"image_urls": [IMG, IMG2]}, "image_urls", "exactly 1 image"),
        ("wan2.6-text-to-video", {"duration": 6}, "duration", "5, 10, 15"),
        ("MiniMax-Hailuo-2.3", {"quality": "1080p", "duration": 10}, "quality", "10 s at 1080p"),
        ("MiniMax-Hailuo-2.3", {"quality": "720p"}, "quality", "768p, 1080p"),
        ("MiniMax-Hailuo-2.3-Fast", {}, "image_urls", "exactly 1 image"),
    ],
)
def test_out_of_range_field_is_refused_naming_the_allowed_values(
    model: str, changes: dict[str, object], field: str, allowed: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        VideoParams.model_validate({"model": model, "prompt": "p", **changes})
    (error,) = caught.value.errors()
    assert error["loc"] == (field,)
    assert allowed in error["msg"] and (
        model in error["msg"] or field == "image_urls" or "s at" in error["msg"]
    )


def test_wire_body_reads_back_to_the_same_neutral_request() -> None:
    """The simulator validates a wire body through the same entry: the round trip is lossless."""
    for model, profile in PROFILES.items():
        images = [IMG, IMG2][: max(profile.min_images, min(profile.max_images, 2))]
        request = CreateVideoRequest(model=model, prompt="p", image_urls=images)
        neutral, names = profile.neutral_from_wire(request.wire_body())
        back = CreateVideoRequest.model_validate(neutral)
        assert back.model_dump(exclude={"n"}) == request.model_dump(exclude={"n"}), model
        wire_image_name = "image_start" if profile.images is ImageWire.START_END else "image_urls"
        assert names["image_urls"] == wire_image_name


def test_cheapest_settings_are_allowed_and_match_the_standard_draft() -> None:
    assert PROFILES[SEEDANCE_MODEL].cheapest_settings() == {
        "quality": "480p",
        "duration": 4,
        "generate_audio": False,
    }
    for model, profile in PROFILES.items():
        images = [IMG, IMG2][: profile.min_images]
        VideoParams(model=model, prompt="p", image_urls=images, **profile.cheapest_settings())
        if profile.draft_model is not None:  # takes the same request, for less
            cheaper = PROFILES[profile.draft_model]
            params = VideoParams(model=model, prompt="p", duration=8)
            assert cheaper.billing.credits(params) < profile.billing.credits(params)
            VideoParams(**params.model_dump(exclude={"model"}), model=cheaper.id)
