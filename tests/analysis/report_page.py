"""Read back what a report page holds: its embedded Table 1 data, its URLs, its tables' rows."""
import json
import re

from pixcap.analysis.sections_statistics import TABLE1_JSON_ID


def table1_data(page: str) -> list:
    """[{"output", "label", "table"}] as the report embedded it for machines."""
    match = re.search(rf'<script type="application/json" id="{TABLE1_JSON_ID}">(.*?)</script>', page, re.S)
    return json.loads(match.group(1).replace("<\\/", "</"))


def urls(page: str) -> list:
    return re.findall(r'(?:src|href)="([^"]*)"', page)


def table_rows(page: str, element_id: str) -> list:
    """The text of each body row's cells of the table with this id."""
    body = re.search(rf'<table[^>]*id="{element_id}".*?<tbody>(.*?)</tbody>', page, re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]
