"""What the documents say about the software matches what it does."""

import json
import re
from decimal import Decimal
from unittest import mock

from app import config
from app.callbacks import signing
from app.db.models import Message
from app.extensions import db
from conftest import API_PASSWORD, ROOT
from helpers import a_sent_reply


def test_the_documented_delivery_report_body_is_applied(dlr_app):
    """docs/replies.md's example of what Messente POSTs to /callbacks/delivery, signed as Messente
    signs it, moves the reply it names forward."""
    replies_md = (ROOT / "docs" / "replies.md").read_text()
    section = replies_md[replies_md.index("### The report's body") :]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.DOTALL).group(1))
    reply_id = a_sent_reply(dlr_app, example["omnimessage_id"])
    body = json.dumps(example).encode()
    response = dlr_app.test_client().post(
        "/callbacks/delivery",
        data=body,
        headers={"Content-Type": "application/json", "X-Messente-Signature": signing.sign(body, API_PASSWORD)},
    )
    assert response.json == {"status": "applied"}
    with dlr_app.app_context():
        reply = db.session.get(Message, reply_id)
        assert reply.delivery == example["status"] == "DELIVRD"
        assert (reply.price, reply.parts) == (Decimal(example["price_info"]["total_price"]), 1)
    documented = set(re.findall(r"^\| `([a-z_]+)`", section, re.MULTILINE)) | set(
        re.findall(r"`([a-z_]+)`", re.search(r"^\| `message_id`.*$", section, re.MULTILINE).group(0))
    )
    assert set(example) <= documented  # the table says what each field of the example is for


def test_the_requests_per_second_default_reads_the_same_in_the_readme_and_replies_md():
    """One budget for every process: the default does not depend on the number of CPUs."""
    with mock.patch("os.cpu_count", return_value=2):
        assert config.defaults("/tmp")["MESSENTE_REQUESTS_PER_SECOND"] == 120
    for document in ("README.md", "docs/replies.md"):
        row = re.search(r"^\| `MESSENTE_REQUESTS_PER_SECOND` \|.*$", (ROOT / document).read_text(), re.MULTILINE)
        assert "120" in row.group(0) and "instance" in row.group(0), document
