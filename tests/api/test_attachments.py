"""Uploading and downloading attachments over REST (CONTRACT.md, "Attachments")."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.models import Attachment
from rooms.models import Ban, Membership
from tests.api.conftest import assert_error
from tests.attachments import HTML, html_as_png, image_bytes, png_header, png_upload
from tests.factories import RoomFactory

pytestmark = pytest.mark.django_db

ATTACHMENT_KEYS = {"id", "name", "size", "content_type", "url"}


def upload(api, user, slug, file, field="file"):
    return api(user).client.post(f"/api/rooms/{slug}/attachments/", {field: file}, format="multipart")


def download(api, user, url):
    response = api(user).client.get(url)
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return response, body


def stored_files(media_root):
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


def test_a_real_png_is_stored_and_served_inline(api, bob, lobby, media_root):
    data = image_bytes("PNG", (40, 30))
    response = upload(api, bob, "lobby", SimpleUploadedFile("Holiday photo.png", data, content_type="text/plain"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert set(body) == ATTACHMENT_KEYS
    assert body["name"] == "Holiday photo.png"
    assert body["size"] == len(data)
    assert body["content_type"] == "image/png"
    assert body["url"] == f"/api/attachments/{body['id']}/Holiday%20photo.png"
    stored = Attachment.objects.get(pk=body["id"])
    assert (stored.is_image, stored.width, stored.height, stored.message_id) == (True, 40, 30, None)
    assert (stored.uploader, stored.room) == (bob, lobby)
    # A random storage name under the room's folder, never the sender's.
    assert "Holiday" not in stored.file.name and stored.file.name.startswith(f"attachments/{lobby.pk}/")
    assert [p.read_bytes() for p in stored_files(media_root)] == [data]

    served, content = download(api, bob, body["url"])
    assert served.status_code == 200
    assert content == data
    assert served["Content-Type"] == "image/png"
    assert (
        served["Content-Disposition"] == "inline; filename=\"Holiday photo.png\"; filename*=UTF-8''Holiday%20photo.png"
    )
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Content-Security-Policy"] == "default-src 'none'; sandbox"
    # Never served from a cache without asking: a ban or a deletion ends access at once.
    assert served["Cache-Control"] == "private, no-cache"
    assert served["ETag"].startswith('"') and served["Last-Modified"].endswith("GMT")


@pytest.mark.parametrize("fmt, content_type", [("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_each_image_format_is_recognised_by_its_content(api, bob, lobby, media_root, fmt, content_type):
    response = upload(api, bob, "lobby", SimpleUploadedFile("no-extension", image_bytes(fmt)))
    assert response.status_code == 201, response.content
    # The name gets the verified format's extension, so a saved copy opens as what it is.
    assert response.json()["content_type"] == content_type
    assert response.json()["name"].startswith("no-extension.")
    served, _ = download(api, bob, response.json()["url"])
    assert served["Content-Type"] == content_type and served["Content-Disposition"].startswith("inline;")


def test_html_named_png_is_a_download_never_inline(api, bob, lobby, media_root):
    response = upload(api, bob, "lobby", html_as_png("innocent.png"))
    assert response.status_code == 201
    body = response.json()
    # Not verified: no image type, whatever the name and the declared type say.
    assert body["content_type"] == "application/octet-stream"
    assert Attachment.objects.get(pk=body["id"]).is_image is False

    served, content = download(api, bob, body["url"])
    assert served.status_code == 200
    assert content == HTML
    assert served["Content-Type"] == "application/octet-stream"
    assert served["Content-Disposition"].startswith('attachment; filename="innocent.png"')
    assert served["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in served["Content-Security-Policy"]


def test_other_files_get_their_type_from_the_name_and_are_downloads(api, bob, lobby, media_root):
    response = upload(api, bob, "lobby", SimpleUploadedFile("notes.txt", b"plain text\n"))
    assert response.json()["content_type"] == "text/plain"
    served, _ = download(api, bob, response.json()["url"])
    assert served["Content-Disposition"].startswith("attachment;")
    assert served["Content-Type"] == "application/octet-stream"


def test_an_empty_file_is_a_file(api, bob, lobby, media_root):
    # As Slack takes them: a 0-byte file is legitimate (a placeholder, an empty
    # log). Named .png it is simply not an image.
    for name, content_type in (("empty.txt", "text/plain"), ("blank.png", "application/octet-stream")):
        response = upload(api, bob, "lobby", SimpleUploadedFile(name, b"", content_type="image/png"))
        assert response.status_code == 201, response.content
        body = response.json()
        assert (body["name"], body["size"], body["content_type"]) == (name, 0, content_type)
        assert Attachment.objects.get(pk=body["id"]).is_image is False
        served, content = download(api, bob, body["url"])
        assert served.status_code == 200 and content == b""
        assert served["Content-Disposition"].startswith("attachment;")
    sent = api(bob).post("/api/rooms/lobby/messages/", {"body": "", "attachments": [body["id"]]})
    assert sent.status_code == 201, sent.content
    assert [a["size"] for a in sent.json()["attachments"]] == [0]


def test_an_empty_part_without_its_blank_line_is_no_file(api, bob, lobby, media_root):
    # Werkzeug's test client (so schemathesis) ends an empty part's headers without
    # the blank line browsers, curl and requests send (RFC 2046 allows both);
    # Django's parser drops such a part, so the server sees no file at all.
    raw = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="empty.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n--B--\r\n"
    )
    response = api(bob).client.generic(
        "POST", "/api/rooms/lobby/attachments/", raw, content_type="multipart/form-data; boundary=B"
    )
    assert "No file" in assert_error(response, 400, "bad_request")["detail"]
    with_blank_line = raw.replace(b"\r\n\r\n--B--", b"\r\n\r\n\r\n--B--")
    response = api(bob).client.generic(
        "POST", "/api/rooms/lobby/attachments/", with_blank_line, content_type="multipart/form-data; boundary=B"
    )
    assert response.status_code == 201 and response.json()["size"] == 0


def test_file_names_are_cleaned(api, bob, lobby, media_root):
    nasty = "../../etc/\u202egnp.exe\x00 \n.bashrc"
    response = upload(api, bob, "lobby", SimpleUploadedFile(nasty, b"x"))
    assert response.status_code == 201
    name = response.json()["name"]
    assert "/" not in name and "\u202e" not in name and "\x00" not in name and not name.startswith(".")


def test_unicode_names_travel_in_filename_star(api, bob, lobby, media_root):
    response = upload(api, bob, "lobby", SimpleUploadedFile("résumé «final».pdf", b"%PDF-1.4"))
    body = response.json()
    assert body["name"] == "résumé «final».pdf"
    assert body["content_type"] == "application/pdf"
    served, _ = download(api, bob, body["url"])
    assert served["Content-Disposition"] == (
        "attachment; filename=\"r_sum_ _final_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%C2%ABfinal%C2%BB.pdf"
    )


def test_too_large_is_413_and_nothing_is_stored(api, bob, lobby, media_root, settings):
    settings.CHAT_MAX_UPLOAD_BYTES = 1000
    response = upload(api, bob, "lobby", SimpleUploadedFile("big.bin", b"x" * 1001))
    assert_error(response, 413, "too_large")
    assert not Attachment.objects.exists()
    assert stored_files(media_root) == []
    # Exactly the limit is fine.
    assert upload(api, bob, "lobby", SimpleUploadedFile("big.bin", b"x" * 1000)).status_code == 201


def test_bad_requests(api, bob, lobby, media_root):
    nothing = api(bob).client.post("/api/rooms/lobby/attachments/", {}, format="multipart")
    assert "No file" in assert_error(nothing, 400, "bad_request")["detail"]
    assert_error(upload(api, bob, "lobby", png_upload(), field="other"), 400, "bad_request")
    plain = api(bob).client.post("/api/rooms/lobby/attachments/", {"file": "text"}, format="multipart")
    assert "not a plain form field" in assert_error(plain, 400, "bad_request")["detail"]
    assert_error(api(bob).post("/api/rooms/lobby/attachments/", {"file": "x"}), 400, "bad_request")
    two = api(bob).client.post(
        "/api/rooms/lobby/attachments/", {"file": [png_upload("a.png"), png_upload("b.png")]}, format="multipart"
    )
    assert "(got 2)" in assert_error(two, 400, "bad_request")["detail"]
    assert_error(api().client.post("/api/rooms/lobby/attachments/", {"file": png_upload()}), 401, "not_authenticated")
    assert not Attachment.objects.exists()


def test_only_those_who_can_post_may_upload(api, alice, bob, carol, lobby, private_room, media_root):
    assert_error(upload(api, bob, "staff", png_upload()), 404, "not_found")
    assert_error(upload(api, bob, "nowhere", png_upload()), 404, "not_found")
    Ban.objects.create(room=lobby, user=carol, banned_by=alice)
    assert_error(upload(api, carol, "lobby", png_upload()), 403, "forbidden")
    locked = RoomFactory(created_by=alice, is_locked=True)
    assert_error(upload(api, alice, locked.slug, png_upload()), 409, "room_locked")
    assert not Attachment.objects.exists()
    assert stored_files(media_root) == []


def test_uploads_share_the_rate_limit_setting_but_not_the_message_budget(api, bob, lobby, media_root, settings):
    settings.CHAT_RATE_LIMIT = "2/60"
    assert upload(api, bob, "lobby", png_upload()).status_code == 201
    assert upload(api, bob, "lobby", png_upload()).status_code == 201
    limited = upload(api, bob, "lobby", png_upload())
    assert_error(limited, 429, "rate_limited")
    assert int(limited["Retry-After"]) >= 1
    # Messages have their own budget.
    assert api(bob).post("/api/rooms/lobby/messages/", {"body": "still here"}).status_code == 201


def test_downloads_need_read_access(api, alice, bob, carol, dave, private_room, lobby, media_root):
    Membership.objects.create(room=private_room, user=bob)
    url = upload(api, bob, "staff", png_upload()).json()["url"]
    # Unused: the uploader only, even among members.
    assert download(api, bob, url)[0].status_code == 200
    assert_error(api(alice).get(url), 404, "not_found")
    attachment = Attachment.objects.get()
    from messaging.services import message_create

    message_create(room=private_room, author=bob, body="see this", attachments=[attachment.pk])
    assert download(api, alice, url)[0].status_code == 200
    # Outside the private room: 404, the same as an id that does not exist.
    assert_error(api(carol).get(url), 404, "not_found")
    assert_error(api(carol).get("/api/attachments/999999/x.png"), 404, "not_found")
    assert_error(api(carol).get("/api/attachments/99999999999999999999/x.png"), 404, "not_found")
    assert_error(api().get(url), 401, "not_authenticated")
    # A ban hides the room's files too.
    Ban.objects.create(room=private_room, user=bob, banned_by=alice)
    assert_error(api(bob).get(url), 404, "not_found")


def test_revalidation_is_a_304_for_readers_only(api, alice, bob, lobby, media_root):
    from messaging.services import message_create

    attachment_id = upload(api, bob, "lobby", png_upload()).json()["id"]
    message_create(room=lobby, author=bob, body="", attachments=[attachment_id])
    url = f"/api/attachments/{attachment_id}/picture.png"
    first, _ = download(api, alice, url)
    etag = first["ETag"]
    again = api(alice).client.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert (again["ETag"], again["Cache-Control"]) == (etag, "private, no-cache")
    since = api(alice).client.get(url, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert since.status_code == 304
    assert download(api, alice, url)[0].status_code == 200  # no validator: the file
    assert api(alice).client.get(url, HTTP_IF_NONE_MATCH='"other"').status_code == 200
    # The cached copy is worth nothing once the reader is banned: 404, not 304.
    Ban.objects.create(room=lobby, user=alice, banned_by=bob)
    assert_error(api(alice).client.get(url, HTTP_IF_NONE_MATCH=etag), 404, "not_found")


def test_a_decompression_bomb_header_is_a_download_not_a_500(api, bob, lobby, media_root):
    response = upload(api, bob, "lobby", png_header(30_000, 30_000))
    assert response.status_code == 201
    assert response.json()["content_type"] == "application/octet-stream"
    assert Attachment.objects.get().is_image is False
    served, _ = download(api, bob, response.json()["url"])
    assert served.status_code == 200
    assert served["Content-Disposition"].startswith("attachment;")


def test_a_deleted_message_takes_its_files_out_of_reach(api, alice, bob, lobby, media_root):
    from messaging.services import message_create, message_delete

    attachment_id = upload(api, bob, "lobby", png_upload()).json()["id"]
    message, _ = message_create(room=lobby, author=bob, body="", attachments=[attachment_id])
    url = Attachment.objects.get().file and f"/api/attachments/{attachment_id}/picture.png"
    assert download(api, alice, url)[0].status_code == 200
    message_delete(message=message, actor=bob)
    assert_error(api(alice).get(url), 404, "not_found")
    assert_error(api(bob).get(url), 404, "not_found")


def test_someone_elses_unused_upload_is_not_found(api, bob, carol, lobby, media_root):
    url = upload(api, bob, "lobby", png_upload()).json()["url"]
    assert_error(api(carol).get(url), 404, "not_found")


def test_a_file_missing_from_storage_is_404_not_500(api, bob, lobby, media_root):
    body = upload(api, bob, "lobby", png_upload()).json()
    for path in stored_files(media_root):
        path.unlink()
    assert_error(api(bob).get(body["url"]), 404, "not_found")


def test_session_authentication_downloads(client, bob, lobby, media_root, api):
    from tests.factories import PASSWORD

    url = upload(api, bob, "lobby", png_upload()).json()["url"]
    assert client.login(username="bob", password=PASSWORD)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"


@pytest.mark.parametrize("path", ["/api/attachments/abc/x.png", "/api/attachments/1/a/b", "/api/attachments/1"])
def test_malformed_download_paths_are_json_404_not_redirects(api, bob, path):
    assert_error(api(bob).get(path), 404, "not_found")


def test_the_default_limit_holds_exactly_despite_djangos_own_upload_settings(api, bob, lobby, media_root, settings):
    """10 MiB passes (Django's DATA_UPLOAD_MAX_MEMORY_SIZE is for form fields, not files); one byte more is 413."""
    assert settings.CHAT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    exact = upload(api, bob, "lobby", SimpleUploadedFile("exact.bin", b"\0" * settings.CHAT_MAX_UPLOAD_BYTES))
    assert exact.status_code == 201 and exact.json()["size"] == settings.CHAT_MAX_UPLOAD_BYTES
    over = upload(api, bob, "lobby", SimpleUploadedFile("over.bin", b"\0" * (settings.CHAT_MAX_UPLOAD_BYTES + 1)))
    assert_error(over, 413, "too_large")
    assert Attachment.objects.count() == 1


def test_too_many_parts_is_a_json_400(api, bob, lobby, media_root):
    files = [SimpleUploadedFile(f"f{n}.txt", b"x") for n in range(101)]
    response = api(bob).client.post("/api/rooms/lobby/attachments/", {"file": files}, format="multipart")
    assert_error(response, 400, "bad_request")
    assert not Attachment.objects.exists()
