"""Every custom search attribute, in one list: the dev stack, tests and deploy register these.

Search attributes are indexed and stored unencrypted, so none of them carries a prompt or other
user content: the prompt is represented by its hash only.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT = SearchAttributeKey.for_keyword("VideoTenant")
USER_ID = SearchAttributeKey.for_keyword("VideoUserId")
STATUS = SearchAttributeKey.for_keyword("VideoStatus")
FAILURE_CATEGORY = SearchAttributeKey.for_keyword("VideoFailureCategory")
SCENARIO = SearchAttributeKey.for_keyword("VideoScenario")
MODEL = SearchAttributeKey.for_keyword("VideoModel")
PROVIDER_TASK_ID = SearchAttributeKey.for_keyword("VideoProviderTaskId")
PROMPT_HASH = SearchAttributeKey.for_keyword("VideoPromptHash")
ATTEMPTS = SearchAttributeKey.for_int("VideoAttempts")
CREDITS = SearchAttributeKey.for_float("VideoCredits")
LATENCY_MS = SearchAttributeKey.for_int("VideoLatencyMs")

SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [
    TENANT,
    USER_ID,
    STATUS,
    FAILURE_CATEGORY,
    SCENARIO,
    MODEL,
    PROVIDER_TASK_ID,
    PROMPT_HASH,
    ATTEMPTS,
    CREDITS,
    LATENCY_MS,
]


def cli_flags() -> list[str]:
    """`--search-attribute Name=Type` pairs for `temporal server start-dev`."""
    flags: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_cli_type(key)}"]
    return flags


def _cli_type(key: SearchAttributeKey) -> str:
    # The CLI names the types as the server's IndexedValueType enum does.
    return {
        "KEYWORD": "Keyword",
        "INT": "Int",
        "DOUBLE": "Double",
        "TEXT": "Text",
        "BOOL": "Bool",
        "DATETIME": "Datetime",
        "KEYWORD_LIST": "KeywordList",
    }[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
