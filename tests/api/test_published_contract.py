"""The HTTP API: the published contract."""

from __future__ import annotations

import httpx

from tests.helpers.api import (
    auth,
    field_names,
)


async def test_a_query_that_is_not_utf8_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/generations?user_id=a%FF%FEb", headers=auth("demo"))
    assert response.status_code == 400 and field_names(response) == {"query"}
