"""Labels: admins keep the set (create, rename, recolour, delete: audited, agents refused), anyone
puts one on a conversation or takes it off from the header (audited), rows show them, the list
filters by one or more with counts (with the views and owners), the export's `labels` column,
and the palette's contrast in both schemes."""

import csv
import io
import json
import re
from html import unescape
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from app.contacts import labels, owners
from app.db.models import LABEL_COLOURS, AuditEvent, Conversation, ConversationLabel, Label, User
from app.extensions import db
from app.privacy import erasure
from conftest import ROOT, body_for, conversation_of, csrf_token

HTMX = {"HX-Request": "true"}
SENDERS = ("+3725550001", "+3725550002", "+3725550003", "+3725550004")


@pytest.fixture
def team(app, client, admin, agent, deliver):
    """alice (admin) and bob (agent) logged in; four customers; labels refund, VIP and Spam."""
    for sender in SENDERS:
        deliver(body_for(sender=sender, text=f"from {sender}"))
    with app.app_context():
        people = dict(db.session.execute(sa.select(User.username, User.id)).all())
        ids = [conversation_of(sender).id for sender in SENDERS]
        made = {
            name: labels.create(name, colour)
            for name, colour in (("refund", "red"), ("VIP", "purple"), ("Spam", "grey"))
        }
    return {
        "alice": client,
        "bob": agent.client,
        "ids": ids,
        "labels": made,
        **{f"{k}_id": v for k, v in people.items()},
    }


def events(app, *actions: str) -> list[tuple[str | None, str, dict]]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(AuditEvent.username, AuditEvent.action, AuditEvent.details)
            .where(AuditEvent.action.in_(actions))
            .order_by(AuditEvent.id)
        )
        return [(username, action, json.loads(details)) for username, action, details in rows]


def names_on(app, conversation_id: int) -> list[str]:
    with app.app_context():
        return [chip.name for chip in labels.of_conversation(conversation_id)]


def listed(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'id="conversation-link-(\d+)"', html)]


def label_counts(html: str) -> dict[str, int]:
    """The label filter's choices: name -> count."""
    menu = re.search(r'<details class="label-filter".*?</details>', html, re.S).group(0)
    return {
        unescape(name): int(count)
        for name, count in re.findall(
            r'<span class="label-chip label-\w+">([^<]+)</span>\s*<span class="count" id="label-count-\d+">(\d+)</span>',
            menu,
        )
    }


def tab_counts(html: str, nav: str) -> dict[str, int]:
    tabs = re.search(rf'<nav id="{nav}".*?</nav>', html, re.S).group(0)
    return {label: int(count) for label, count in re.findall(r'>([A-Za-z ]+) <span class="count">(\d+)</span>', tabs)}


def label_form(client, conversation_id: int, label_id: int) -> dict:
    """The header's form for one label: its action and fields."""
    html = client.get(f"/conversations/{conversation_id}").text
    form = re.search(
        rf'<form method="post" action="([^"]+)"[^>]*>\s*<input type="hidden" name="csrf_token" value="([^"]+)">\s*'
        rf'<input type="hidden" name="label" value="{label_id}">\s*<input type="hidden" name="on" value="([01])">',
        html,
    )
    assert form, "no form for that label in the header"
    return {"action": unescape(form.group(1)), "csrf_token": form.group(2), "label": label_id, "on": form.group(3)}


def toggle(client, conversation_id: int, label_id: int, **headers):
    form = label_form(client, conversation_id, label_id)
    return client.post(form.pop("action"), data=form, headers=headers)


# --- the palette ------------------------------------------------------------------------------


def luminance(hex_colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(one: str, other: str) -> float:
    lighter, darker = sorted((luminance(one), luminance(other)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def palette(css: str) -> dict[str, tuple[str, str]]:
    return {
        name: (fg, bg)
        for name, fg, bg in re.findall(
            r"\.label-(\w+)\s*\{\s*--chip-fg:\s*(#[0-9a-f]{6});\s*--chip-bg:\s*(#[0-9a-f]{6});\s*\}", css
        )
    }


def test_every_colour_has_aa_contrast_in_the_light_and_the_dark_scheme():
    css = (ROOT / "static" / "style.css").read_text()
    light_css, dark_css = css.split("/* Labels:", 1)[1].split("@media (prefers-color-scheme: dark)", 1)
    dark_css = dark_css.replace(".label-chip, .swatch, .label-grey", ".label-grey")
    page_background = {"light": "#ffffff", "dark": "#15181c"}  # --bg in each scheme, behind the menu's swatches
    for scheme, colours in (("light", palette(light_css)), ("dark", palette(dark_css))):
        assert set(colours) == set(LABEL_COLOURS), scheme
        for name, (fg, bg) in colours.items():
            assert contrast(fg, bg) >= 4.5, f"{name} text on its chip, {scheme}: {contrast(fg, bg):.2f}"
            # The menu's swatch is a dot of the text colour on the page: a graphic, 3:1.
            assert contrast(fg, page_background[scheme]) >= 3, f"{name} swatch, {scheme}"


# --- admins keep the set ----------------------------------------------------------------------


def test_names_with_a_comma_and_duplicates_without_regard_to_case_are_refused(app, team):
    with app.app_context():
        with pytest.raises(labels.LabelRefused, match="cannot contain a comma"):
            labels.create("refund, partial")
        with pytest.raises(labels.LabelRefused, match="There is a label called “VIP” already"):
            labels.create("vip")
        with pytest.raises(labels.LabelRefused, match="There is a label called “refund” already"):
            labels.rename(team["labels"]["VIP"], "  REFUND ")
        with pytest.raises(labels.LabelRefused, match="at most 40 characters"):
            labels.create("x" * 41)
        with pytest.raises(labels.LabelRefused, match="Give the label a name"):
            labels.create("   ")
        with pytest.raises(labels.LabelRefused, match="Pick one of the colours"):
            labels.create("Later", "#ff0000")
        assert labels.rename(team["labels"]["VIP"], "vip")  # its own name in other letters: fine
        assert [label.name for label in labels.all_labels()] == ["refund", "Spam", "vip"]

    alice = team["alice"]
    page = alice.get("/admin/labels").text
    refused = alice.post("/admin/labels", data={"csrf_token": csrf_token(page), "name": "a,b", "colour": "red"})
    assert refused.status_code == 400
    assert "A label&#39;s name cannot contain a comma" in refused.text
    assert 'value="a,b"' in refused.text  # what was typed, to correct
    duplicate = alice.post("/admin/labels", data={"csrf_token": csrf_token(page), "name": "SPAM", "colour": "red"})
    assert duplicate.status_code == 400
    assert "There is a label called “Spam” already." in duplicate.text


def test_admins_create_rename_recolour_and_delete_audited_and_agents_get_403(app, team):
    alice, bob = team["alice"], team["bob"]
    page = alice.get("/admin/labels")
    assert page.status_code == 200
    assert '<a href="/admin/labels" aria-current="page">Labels</a>' in page.text
    token = csrf_token(page.text)
    assert (
        alice.post("/admin/labels", data={"csrf_token": token, "name": " Wholesale ", "colour": "teal"}).status_code
        == 303
    )
    with app.app_context():
        wholesale = db.session.scalar(sa.select(Label).where(Label.name == "Wholesale"))
        assert (wholesale.name_key, wholesale.colour) == ("wholesale", "teal")
        wholesale_id = wholesale.id
    changed = alice.post(f"/admin/labels/{wholesale_id}", data={"csrf_token": token, "name": "Trade", "colour": "blue"})
    assert changed.status_code == 303
    assert alice.post(f"/admin/labels/{wholesale_id}/delete", data={"csrf_token": token}).status_code == 303
    assert alice.post("/admin/labels/999999/delete", data={"csrf_token": token}).status_code == 404
    assert events(app, "label_created", "label_renamed", "label_recoloured", "label_deleted")[3:] == [
        ("alice", "label_created", {"label": "Wholesale", "colour": "teal"}),
        ("alice", "label_renamed", {"label": "Trade", "was": "Wholesale"}),
        ("alice", "label_recoloured", {"label": "Trade", "colour": "blue", "was": "teal"}),
        ("alice", "label_deleted", {"label": "Trade", "conversations": 0}),
    ]

    bob_token = csrf_token(bob.get("/").text)
    refund = team["labels"]["refund"]
    assert bob.get("/admin/labels").status_code == 403
    assert bob.post("/admin/labels", data={"csrf_token": bob_token, "name": "Mine", "colour": "red"}).status_code == 403
    assert (
        bob.post(f"/admin/labels/{refund}", data={"csrf_token": bob_token, "name": "x", "colour": "red"}).status_code
        == 403
    )
    assert bob.post(f"/admin/labels/{refund}/delete", data={"csrf_token": bob_token}).status_code == 403
    with app.app_context():
        assert [label.name for label in labels.all_labels()] == ["refund", "Spam", "VIP"]


# --- on a conversation ------------------------------------------------------------------------


def test_an_agent_adds_and_removes_a_label_from_the_header_audited_and_the_list_polls(app, team):
    bob, first, refund = team["bob"], team["ids"][0], team["labels"]["refund"]
    with app.app_context():
        before = db.session.get(Conversation, first).change_seq
    header = bob.get(f"/conversations/{first}").text
    assert 'id="label-menu"' in header and 'aria-keyshortcuts="l"' in header
    assert "Manage labels" not in header  # an admin's link

    added = toggle(bob, first, refund)  # a plain form: back to the thread
    assert added.status_code == 303
    assert added.headers["Location"] == f"/conversations/{first}"
    assert names_on(app, first) == ["refund"]
    with app.app_context():
        assert db.session.get(Conversation, first).change_seq > before  # polls redraw
    assert (
        'aria-pressed="true">\n          <span class="swatch label-red" aria-hidden="true"></span>refund'
        in bob.get(f"/conversations/{first}").text
    )

    removed = toggle(bob, first, refund, **HTMX)  # htmx: the block again, its menu open
    assert removed.status_code == 200
    assert removed.headers["HX-Trigger"] == "conversation-changed"
    assert removed.text.lstrip().startswith("{#") is False and 'id="labels"' in removed.text
    assert '<details class="label-menu" id="label-menu" open>' in removed.text
    assert names_on(app, first) == []
    assert events(app, "label_added", "label_removed") == [
        ("bob", "label_added", {"conversation": first, "label": "refund"}),
        ("bob", "label_removed", {"conversation": first, "label": "refund"}),
    ]
    # Twice the same: nothing more recorded.
    with app.app_context():
        assert labels.add_to(first, refund)
        assert not labels.add_to(first, refund)
        assert labels.remove_from(first, refund)
        assert not labels.remove_from(first, refund)
    assert len(events(app, "label_added", "label_removed")) == 4

    token = csrf_token(header)
    assert (
        bob.post(f"/conversations/{first}/labels", data={"csrf_token": token, "label": "x", "on": "1"}).status_code
        == 400
    )
    gone = bob.post(f"/conversations/{first}/labels", data={"csrf_token": token, "label": "999999", "on": "1"})
    assert gone.status_code == 409


def test_rows_and_the_header_show_labels_and_a_thread_poll_brings_a_teammates_change(app, team):
    alice, bob, first = team["alice"], team["bob"], team["ids"][0]
    page = bob.get(f"/conversations/{first}").text
    poll = re.search(r'id="thread-poller" data-poll\s+hx-get="([^"]+)"', page).group(1)
    showing = dict(re.findall(r'name="(showing_\w+)" value="([^"]*)" data-showing', page))
    with app.app_context():
        labels.add_to(first, team["labels"]["VIP"])
        labels.add_to(first, team["labels"]["refund"])
    update = bob.get(unescape(poll) + "&" + urlencode(showing), headers=HTMX).text
    assert '<div id="labels" class="labels-line" hx-swap-oob="true">' in update
    assert re.findall(r'<li class="label-chip label-(\w+)">([^<]+)</li>', update) == [
        ("red", "refund"),
        ("purple", "VIP"),
    ]

    row = re.search(r'<li data-sender="\+3725550001".*?</li>\n', alice.get("/").text, re.S).group(0)
    assert re.findall(r'<span class="label-chip label-(\w+)">([^<]+)</span>', row) == [
        ("red", "refund"),
        ("purple", "VIP"),
    ]
    assert '<span class="visually-hidden">labels:</span>' in row


def test_renaming_keeps_a_label_on_its_conversations_and_deleting_takes_it_off(app, team):
    first, second = team["ids"][:2]
    vip = team["labels"]["VIP"]
    with app.app_context():
        labels.add_to(first, vip)
        labels.add_to(second, vip)
        seqs = dict(db.session.execute(sa.select(Conversation.id, Conversation.change_seq)).all())
        assert labels.rename(vip, "Gold")
        after = dict(db.session.execute(sa.select(Conversation.id, Conversation.change_seq)).all())
        assert after[first] > seqs[first] and after[second] > seqs[second]  # their rows redraw
        assert after[team["ids"][2]] == seqs[team["ids"][2]]
    assert names_on(app, first) == names_on(app, second) == ["Gold"]
    with app.app_context():
        labels.add_to(first, team["labels"]["refund"])
        labels.rename(team["labels"]["refund"], "Abuse")
        kept = dict(db.session.execute(sa.select(Conversation.id, Conversation.label_names)).all())
    assert kept == {first: "Abuse, Gold", second: "Gold", team["ids"][2]: None, team["ids"][3]: None}
    assert listed(team["alice"].get("/?label=gold").text) == [second, first]

    with app.app_context():
        assert labels.delete(vip) == 2
        assert db.session.scalars(sa.select(ConversationLabel.label_id)).all() == [team["labels"]["refund"]]
    assert names_on(app, first) == ["Abuse"]
    with app.app_context():
        assert db.session.get(Conversation, first).label_names == "Abuse"
        assert db.session.get(Conversation, second).label_names is None
    assert events(app, "label_deleted") == [(None, "label_deleted", {"label": "Gold", "conversations": 2})]
    assert listed(team["alice"].get("/?label=gold").text) == []


# --- the list's filter ------------------------------------------------------------------------


def test_the_list_filters_by_labels_all_of_them_case_aside_with_the_views_and_owners_and_counts(app, team):
    alice = team["alice"]
    one, two, three, four = team["ids"]
    refund, vip = team["labels"]["refund"], team["labels"]["VIP"]
    with app.app_context():
        for conversation_id in (one, two, three):
            labels.add_to(conversation_id, refund)
        for conversation_id in (two, three, four):
            labels.add_to(conversation_id, vip)
        owners.assign(three, team["alice_id"], team["alice_id"])
    from app import contacts

    with app.app_context():
        contacts.set_status(two, "done")

    everything = alice.get("/?view=all").text
    assert label_counts(everything) == {"refund": 3, "Spam": 0, "VIP": 3}
    with app.app_context():  # a new label, on no conversation: no change number moves, yet it shows
        late = labels.create("Late", "orange")
    assert label_counts(alice.get("/?view=all").text) == {"Late": 0, "refund": 3, "Spam": 0, "VIP": 3}
    with app.app_context():
        labels.delete(late)

    refunds = alice.get("/?view=all&label=refund").text
    assert listed(refunds) == [three, two, one]
    assert label_counts(refunds) == {"refund": 3, "Spam": 0, "VIP": 2}  # adding VIP would leave 2
    assert tab_counts(refunds, "view-tabs") == {
        "Open": 2,
        "Snoozed": 0,
        "Done": 1,
        "All": 3,
        "Unread": 3,
        "Mentions": 0,
        "Opted out": 0,
    }
    assert (
        '<summary><span class="visually-hidden">Filter by </span>Labels<span class="chosen">: refund</span></summary>'
        in refunds
    )

    both = alice.get("/?view=all&label=REFUND&label=vip").text  # both; names without regard to case
    assert listed(both) == [three, two]
    assert label_counts(both) == {"refund": 2, "Spam": 0, "VIP": 2}
    assert listed(alice.get("/?view=all&label=Refund&label=spam").text) == []
    assert listed(alice.get("/?view=all&label=nosuchlabel").text) == []

    # With a view, an owner, and the other tabs' counts under the labels.
    open_both = alice.get("/?label=refund&label=vip").text  # Open is the default view
    assert listed(open_both) == [three]
    assert tab_counts(open_both, "owner-tabs") == {"Mine": 1, "Unassigned": 0, "All": 1}
    assert listed(alice.get("/?view=done&label=refund&label=vip").text) == [two]
    assert listed(alice.get("/?view=all&assignee=me&label=vip").text) == [three]
    assert listed(alice.get("/?view=all&assignee=none&label=vip").text) == [four, two]
    mine = alice.get("/?view=all&assignee=me&label=vip").text
    assert label_counts(mine) == {"refund": 1, "Spam": 0, "VIP": 1}

    # The labels stay in the links: tabs, rows, the poll, the export.
    assert 'href="/?view=done&amp;label=refund&amp;label=vip"' in both
    assert re.search(rf'href="/conversations/{three}\?view=all&amp;label=REFUND&amp;label=vip"', both)
    assert re.search(r'hx-get="/\?since=\d+&amp;view=all&amp;label=REFUND&amp;label=vip"', both)
    export_link = re.search(r'<a id="export"[^>]*href="([^"]+)"', both).group(1)
    assert "label=refund&amp;label=vip" in export_link


def test_a_list_poll_brings_the_label_counts_and_keeps_the_filter(app, team):
    alice, first = team["alice"], team["ids"][0]
    page = alice.get("/?label=refund").text
    since = int(re.search(r'hx-get="/\?since=(\d+)', page).group(1))
    assert listed(page) == []
    with app.app_context():
        labels.add_to(first, team["labels"]["refund"])
    poll = alice.get(f"/?since={since}&label=refund", headers=HTMX).text
    assert listed(poll) == [first]
    refund = team["labels"]["refund"]
    assert f'<span class="count" id="label-count-{refund}" hx-swap-oob="true">1</span>' in poll


# --- the export and erasure -------------------------------------------------------------------


def test_the_export_fills_labels_sorted_and_joined_and_filters_by_them(app, team):
    alice = team["alice"]
    one, two = team["ids"][:2]
    with app.app_context():
        labels.add_to(one, team["labels"]["VIP"])
        labels.add_to(one, team["labels"]["refund"])
        labels.add_to(one, team["labels"]["Spam"])
        labels.add_to(two, team["labels"]["VIP"])
        rename_to = labels.create("=cmd", "red")  # a formula-looking name stays text
        labels.add_to(two, rename_to)
    for path in ("/export.csv", "/export.csv?label=vip"):
        rows = list(csv.reader(io.StringIO(alice.get(path).data.decode("utf-8-sig"))))
        header, body = rows[0], rows[1:]
        by_sender = {row[header.index("sender")]: row[header.index("labels")] for row in body}
        expected = {"+3725550001": "refund, Spam, VIP", "+3725550002": "'=cmd, VIP"}
        if path == "/export.csv":
            expected |= {"+3725550003": "", "+3725550004": ""}
        assert by_sender == expected, path
    assert 'name="label" value="vip"' in alice.get("/export?label=VIP").text


def test_erasing_a_conversation_takes_its_labels_with_it(app, team):
    first = team["ids"][0]
    with app.app_context():
        labels.add_to(first, team["labels"]["VIP"])
        labels.add_to(team["ids"][1], team["labels"]["VIP"])
        erasure.erase_conversation(first)
        left = db.session.scalars(sa.select(ConversationLabel.conversation_id)).all()
    assert left == [team["ids"][1]]
