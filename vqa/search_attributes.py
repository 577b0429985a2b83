"""The stream workflows' custom search attributes, for listing streams by state, source or defects.

The one place their names are written: the workflow keeps these keys up to date, the
starter reads and queries them, and the dev server the project starts registers
`SEARCH_ATTRIBUTES` (vqa/devserver.py; on a real cluster: `temporal operator
search-attribute create`).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

STATE = SearchAttributeKey.for_keyword("VqaState")
SOURCE = SearchAttributeKey.for_keyword("VqaSource")
OPEN_DEFECTS = SearchAttributeKey.for_int("VqaOpenDefects")
DEFECTS = SearchAttributeKey.for_int("VqaDefects")
DEFECT_KINDS = SearchAttributeKey.for_keyword_list("VqaDefectKinds")

KEYS: tuple[SearchAttributeKey[Any], ...] = (STATE, SOURCE, OPEN_DEFECTS, DEFECTS, DEFECT_KINDS)

# The type names `temporal operator search-attribute create` and `start-dev --search-attribute` take.
_TYPE_NAMES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}

SEARCH_ATTRIBUTES: dict[str, str] = {key.name: _TYPE_NAMES[key.indexed_value_type] for key in KEYS}
"""name -> Temporal type, e.g. {"VqaState": "Keyword", ...}: what a namespace must have registered."""
