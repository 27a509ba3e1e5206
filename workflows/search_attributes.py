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
# Every provider task of the generation (draft, retries, adopted and unadopted orphans), so a
# support ticket quoting any of them finds it: `VideoProviderTaskIds = 'task-unified-…'`.
# A new KeywordList rather than a change of `VideoProviderTaskId`'s type: a registered attribute
# keeps its type in a live namespace (changing it means removing it, which loses what closed
# runs indexed, and the compose setup job skips names that exist, so a renamed type would never
# be applied there), and runs started before keep upserting the old one.
PROVIDER_TASK_IDS = SearchAttributeKey.for_keyword_list("VideoProviderTaskIds")
# Deprecated: the latest task only. Still written, so saved queries and dashboards keep working
# while they move to VideoProviderTaskIds; remove once no query uses it (after one retention).
PROVIDER_TASK_ID = SearchAttributeKey.for_keyword("VideoProviderTaskId")
PROMPT_HASH = SearchAttributeKey.for_keyword("VideoPromptHash")
ATTEMPTS = SearchAttributeKey.for_int("VideoAttempts")
CREDITS = SearchAttributeKey.for_float("VideoCredits")
LATENCY_MS = SearchAttributeKey.for_int("VideoLatencyMs")
# The requested shape, set at start: the recent p95 of the same model, duration and quality is
# what a generation is expected to take (workflows.report.expected_latencies).
DURATION = SearchAttributeKey.for_int("VideoDuration")
QUALITY = SearchAttributeKey.for_keyword("VideoQuality")
# Set (true) when the draft was rejected: the status says `cancelled`, as for a cancel, but a
# rejection is a product signal of its own and the report counts it apart.
DRAFT_REJECTED = SearchAttributeKey.for_bool("VideoDraftRejected")
# When the final of an approved draft started (the approval): its job TTL and its expected time
# run from here, not from the submission (the ops page's "stuck" and "slower than usual").
FINAL_STARTED = SearchAttributeKey.for_datetime("VideoFinalStartedAt")

SEARCH_ATTRIBUTES: list[SearchAttributeKey] = [
    TENANT,
    USER_ID,
    STATUS,
    FAILURE_CATEGORY,
    SCENARIO,
    MODEL,
    PROVIDER_TASK_ID,
    PROVIDER_TASK_IDS,
    PROMPT_HASH,
    ATTEMPTS,
    CREDITS,
    LATENCY_MS,
    DURATION,
    QUALITY,
    DRAFT_REJECTED,
    FINAL_STARTED,
]


# The `temporal` CLI names the types as the server's IndexedValueType enum does.
CLI_TYPE_NAMES = {
    "KEYWORD": "Keyword",
    "INT": "Int",
    "DOUBLE": "Double",
    "TEXT": "Text",
    "BOOL": "Bool",
    "DATETIME": "Datetime",
    "KEYWORD_LIST": "KeywordList",
}


def cli_type(key: SearchAttributeKey) -> str:
    """The type's name as `temporal` CLI flags (`--search-attribute Name=Type`) spell it."""
    return CLI_TYPE_NAMES[key.indexed_value_type.name.removeprefix("INDEXED_VALUE_TYPE_")]
