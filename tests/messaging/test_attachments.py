"""messaging.attachments: names, types, images, cleanup of unused uploads, files leaving with their rows."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.utils import timezone
from PIL import Image

from messaging.attachments import (
    MAX_NAME_CHARS,
    attachment_create,
    attachment_delete,
    clean_filename,
    content_type_for,
    verified_image,
)
from messaging.models import Attachment
from tests.attachments import HTML, image_bytes, png_header, png_upload
from tests.factories import MessageFactory, RoomFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("photo.png", "photo.png"),
        ("C:\\Users\\me\\Desktop\\photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("/abs/path/report.pdf", "report.pdf"),
        (".bashrc", "bashrc"),
        ("...", "file"),
        ("", "file"),
        (None, "file"),
        ("  spaced \t out\n.txt  ", "spaced out .txt"),
        ("evil\u202egnp.exe", "evilgnp.exe"),  # a right-to-left override would show "exe.png"
        ("zero\u200bwidth.txt", "zerowidth.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ('what?<is>:"this"|*.txt', "what__is___this___.txt"),
        ("trailing dots...", "trailing dots"),
        ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),  # NFC
    ],
)
def test_clean_filename(raw, clean):
    assert clean_filename(raw) == clean


def test_long_names_keep_their_extension():
    cleaned = clean_filename("a" * 500 + ".tar")
    assert len(cleaned) == MAX_NAME_CHARS and cleaned.endswith("a.tar")
    assert len(clean_filename("b" * 500)) == MAX_NAME_CHARS


def test_types_of_unverified_files_come_from_the_name_but_never_claim_an_image():
    assert content_type_for("notes.txt") == "text/plain"
    assert content_type_for("report.pdf") == "application/pdf"
    assert content_type_for("archive.tar.gz") == "application/gzip"
    assert content_type_for("no-extension") == "application/octet-stream"
    # Named like an image, not verified as one: bytes.
    for name in ("fake.png", "fake.jpg", "fake.gif", "fake.webp"):
        assert content_type_for(name) == "application/octet-stream"


def test_verified_image():
    assert verified_image(png_upload(size=(7, 5))) == ("PNG", 7, 5)
    assert verified_image(SimpleUploadedFile("x.png", HTML)) is None
    # A PNG cut short fails verification (its chunks' checksums).
    data = image_bytes("PNG", (64, 64))
    assert verified_image(SimpleUploadedFile("x.png", data[: len(data) // 2])) is None
    # BMP is an image Pillow reads, but not one we serve inline.
    assert verified_image(SimpleUploadedFile("x.bmp", image_bytes("BMP"))) is None


def test_decompression_bombs_are_plain_files(bob, lobby, media_root):
    import io

    buffer = io.BytesIO()
    # 60 megapixels in a few kilobytes: never decoded, never inline.
    Image.new("1", (10_000, 6_000)).save(buffer, format="PNG")
    bomb = SimpleUploadedFile("bomb.png", buffer.getvalue())
    assert verified_image(bomb) is None
    attachment = attachment_create(room=lobby, uploader=bob, upload=bomb)
    assert (attachment.is_image, attachment.content_type) == (False, "application/octet-stream")


def test_a_header_declaring_a_huge_picture_is_a_plain_file_and_sets_nothing_global(bob, lobby, media_root):
    """30000 x 30000 trips Pillow's DecompressionBombError in open(): caught, a download; no warning filter is left."""
    import warnings

    filters_before = list(warnings.filters)
    bomb = png_header(30_000, 30_000)
    assert len(bomb) < 100
    assert verified_image(bomb) is None
    attachment = attachment_create(room=lobby, uploader=bob, upload=bomb)
    assert (attachment.is_image, attachment.content_type, attachment.name) == (
        False,
        "application/octet-stream",
        "bomb.png",
    )
    assert warnings.filters == filters_before


def test_a_verified_image_gets_its_format_extension(bob, lobby, media_root):
    attachment = attachment_create(room=lobby, uploader=bob, upload=png_upload("page.html"))
    assert (attachment.name, attachment.content_type, attachment.is_image) == ("page.html.png", "image/png", True)


def _aged(attachment: Attachment, **ago) -> Attachment:
    Attachment.objects.filter(pk=attachment.pk).update(created_at=timezone.now() - timedelta(**ago))
    return attachment


def test_cleanup_removes_old_unused_uploads_and_their_files(bob, lobby, media_root, django_capture_on_commit_callbacks):
    old = _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload("old.png")), hours=25)
    recent = _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload("recent.png")), hours=23)
    used = _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload("used.png")), days=30)
    Attachment.objects.filter(pk=used.pk).update(message=MessageFactory(room=lobby, author=bob))
    paths = {a.name: media_root / a.file.name for a in (old, recent, used)}
    assert all(path.exists() for path in paths.values())

    with django_capture_on_commit_callbacks(execute=True):
        call_command("remove_unused_uploads")
    assert set(Attachment.objects.values_list("name", flat=True)) == {"recent.png", "used.png"}
    assert not paths["old.png"].exists()
    assert paths["recent.png"].exists() and paths["used.png"].exists()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("remove_unused_uploads", "--older-than", "3600s")
    assert set(Attachment.objects.values_list("name", flat=True)) == {"used.png"}
    assert not paths["recent.png"].exists() and paths["used.png"].exists()


def test_uploads_also_sweep_day_old_unused_ones_at_most_once_per_interval(
    bob, lobby, media_root, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """The contract's "removed after a day" holds without cron: a process sweeps when someone uploads."""
    import time

    import messaging.attachments as attachments

    monkeypatch.setattr(attachments, "_last_sweep", None)
    old = _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload("old.png")), hours=25)
    path = media_root / old.file.name
    # Within the interval: no second look.
    attachment_create(room=lobby, uploader=bob, upload=png_upload("soon.png"))
    assert Attachment.objects.filter(pk=old.pk).exists()

    monkeypatch.setattr(attachments, "_last_sweep", time.monotonic() - settings.CHAT_UPLOAD_SWEEP_INTERVAL - 1)
    with django_capture_on_commit_callbacks(execute=True):
        attachment_create(room=lobby, uploader=bob, upload=png_upload("later.png"))
    assert set(Attachment.objects.values_list("name", flat=True)) == {"soon.png", "later.png"}
    assert not path.exists()


def test_one_sweep_removes_everything_due_in_batches_within_its_budget(
    bob, lobby, media_root, monkeypatch, django_capture_on_commit_callbacks
):
    import messaging.attachments as attachments

    monkeypatch.setattr(attachments, "SWEEP_BATCH_SIZE", 2)
    monkeypatch.setattr(attachments, "SWEEP_MAX_BATCHES", 3)
    old = [
        _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload(f"old{i}.png")), hours=25 + i)
        for i in range(7)
    ]
    fresh = attachment_create(room=lobby, uploader=bob, upload=png_upload("fresh.png"))
    paths = [media_root / a.file.name for a in old]
    with django_capture_on_commit_callbacks(execute=True):
        # Three batches of two: more than one batch in one run, and no more than the budget.
        assert attachments.sweep_unused_uploads(force=True) == 6
    assert list(Attachment.objects.values_list("name", flat=True).order_by("pk")) == ["old0.png", "fresh.png"]
    assert [p.exists() for p in paths] == [True] + [False] * 6
    with django_capture_on_commit_callbacks(execute=True):
        assert attachments.sweep_unused_uploads(force=True) == 1  # the rest; a short batch ends the run
    assert list(Attachment.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not paths[0].exists()


def test_the_command_removes_everything_due_whatever_the_sweep_budget(bob, lobby, media_root, monkeypatch):
    import messaging.attachments as attachments

    monkeypatch.setattr(attachments, "SWEEP_BATCH_SIZE", 2)
    monkeypatch.setattr(attachments, "SWEEP_MAX_BATCHES", 1)
    for i in range(5):
        _aged(attachment_create(room=lobby, uploader=bob, upload=png_upload(f"old{i}.png")), days=2)
    call_command("remove_unused_uploads")
    assert not Attachment.objects.exists()


@pytest.mark.parametrize("value, ok", [("2d", True), ("30m", True), ("1.5", True), ("soon", False), ("-1h", False)])
def test_cleanup_option(value, ok):
    if ok:
        call_command("remove_unused_uploads", "--older-than", value)
    else:
        with pytest.raises(CommandError):
            call_command("remove_unused_uploads", "--older-than", value)


def test_deleting_a_row_deletes_its_file_once_committed(bob, lobby, media_root, django_capture_on_commit_callbacks):
    attachment = attachment_create(room=lobby, uploader=bob, upload=png_upload())
    path = media_root / attachment.file.name
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        attachment_delete(attachment=attachment)
    # Not before COMMIT: a rolled-back delete keeps its file.
    assert path.exists()
    for callback in callbacks:
        callback()
    assert not path.exists()


def test_a_room_deleted_takes_its_files(alice, bob, media_root, django_capture_on_commit_callbacks):
    room = RoomFactory(created_by=alice)
    attachment = attachment_create(room=room, uploader=bob, upload=png_upload())
    path = media_root / attachment.file.name
    with django_capture_on_commit_callbacks(execute=True):
        room.delete()
    assert not path.exists()


def test_a_failed_insert_leaves_no_file(bob, lobby, media_root, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(Attachment, "save", fail)
    with pytest.raises(RuntimeError):
        attachment_create(room=lobby, uploader=bob, upload=png_upload())
    assert not [p for p in media_root.rglob("*") if p.is_file()]


# --- admin ---------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, alice):
    client.force_login(alice)
    return client


def test_admin_lists_attachments_and_shows_them_on_the_message(
    staff_client, alice, bob, lobby, private_room, media_root
):
    message = MessageFactory(room=private_room, author=alice, body="files")
    first = attachment_create(room=private_room, uploader=alice, upload=png_upload("first.png"))
    second = attachment_create(room=private_room, uploader=alice, upload=SimpleUploadedFile("notes.txt", b"hi"))
    Attachment.objects.filter(pk=first.pk).update(message=message, position=0)
    Attachment.objects.filter(pk=second.pk).update(message=message, position=1)
    attachment_create(room=lobby, uploader=bob, upload=png_upload("unused.png"))

    page = staff_client.get(f"/admin/messaging/message/{message.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.index("first.png") < html.index("notes.txt")
    assert f"/admin/messaging/attachment/{first.pk}/download/" in html

    listing = staff_client.get("/admin/messaging/attachment/", {"used": "no"})
    assert listing.status_code == 200
    assert "unused.png" in listing.content.decode() and "first.png" not in listing.content.decode()
    for params in ({"is_image__exact": "1"}, {"used": "yes"}, {"q": "notes"}):
        assert staff_client.get("/admin/messaging/attachment/", params).status_code == 200
    assert staff_client.get(f"/admin/messaging/attachment/{first.pk}/change/").status_code == 200

    # Staff see any room's files through the admin, with the API's safe headers.
    served = staff_client.get(f"/admin/messaging/attachment/{second.pk}/download/")
    assert served.status_code == 200
    assert served["Content-Disposition"].startswith("attachment;")
    assert served["X-Content-Type-Options"] == "nosniff"


def test_admin_download_is_for_staff_only(client, bob, lobby, media_root):
    attachment = attachment_create(room=lobby, uploader=bob, upload=png_upload())
    client.force_login(bob)
    response = client.get(f"/admin/messaging/attachment/{attachment.pk}/download/")
    assert response.status_code == 302  # to the admin login


def test_admin_delete_removes_the_stored_file(staff_client, bob, lobby, media_root, django_capture_on_commit_callbacks):
    attachment = attachment_create(room=lobby, uploader=bob, upload=png_upload())
    path = media_root / attachment.file.name
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(f"/admin/messaging/attachment/{attachment.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Attachment.objects.exists()
    assert not path.exists()

    # And the bulk action.
    others = [attachment_create(room=lobby, uploader=bob, upload=png_upload()) for _ in range(2)]
    paths = [media_root / a.file.name for a in others]
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(
            "/admin/messaging/attachment/",
            {"action": "delete_selected", "_selected_action": [a.pk for a in others], "post": "yes"},
        )
    assert not Attachment.objects.exists()
    assert not any(path.exists() for path in paths)
