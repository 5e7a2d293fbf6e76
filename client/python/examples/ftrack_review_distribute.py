"""ftrack action: distribute a review session to its collaborators with Ferry.

Offered on one selected review session. Its dialog asks for the recipients
(prefilled with the session's collaborators), the destination folder
(default ``YYYYMMDD/<session name>``) and the Ferry share. It gathers every
version's published components: ``.mov``/``.mp4`` as previews (sent at high
priority), ``.exr``/``.dpx``/``.tif``/``.tiff`` as frame sequences. It makes
one Ferry delivery to every recipient and reports the job ids back to
ftrack, or a clear failure.

Credentials come from the environment: ``FTRACK_SERVER``,
``FTRACK_API_USER``, ``FTRACK_API_KEY`` for ftrack; ``FERRY_SERVER``,
``FERRY_USER``, ``FERRY_API_KEY``, ``FERRY_FINGERPRINT`` for Ferry.
``FERRY_SHARE_MAP`` maps storage the appliance also mounts to its shares,
``/mnt/projects=media;/mnt/vault=vault``: files below a mapped prefix are
sent from the share with no upload, others are uploaded by the ``ferry``
client.

``FERRY_FTRACK_USERS`` (``alice,bob``) limits who sees the action; unset,
everyone does.

Run it as an action listener:  python ftrack_review_distribute.py
(deployment, a systemd unit and storage mapping: client/python/README.md)
"""

import datetime
import logging
import os

PREVIEW_EXTENSIONS = (".mov", ".mp4")
SEQUENCE_EXTENSIONS = (".exr", ".dpx", ".tif", ".tiff")
IDENTIFIER = "ferry.review-session.distribute"
LABEL = "Distribute with Ferry"

log = logging.getLogger("ferry.ftrack")


# --- logic (tested with recorded ftrack results) ------------------------

def selected_review_session(event):
    """The one review session selected, or None (the action is not offered)."""
    selection = event["data"].get("selection", [])
    if len(selection) != 1 or selection[0].get("entityType") != "reviewsession":
        return None
    return selection[0]["entityId"]


def collaborator_emails(ftrack, session_id):
    invitees = ftrack.query(
        f'select email from ReviewSessionInvitee where review_session.id is "{session_id}"'
    ).all()
    seen, out = set(), []
    for i in invitees:
        email = (i["email"] or "").strip()
        if email and email.lower() not in seen:
            seen.add(email.lower())
            out.append(email)
    return out


def default_folder(session_name, today=None):
    today = today or datetime.date.today()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in session_name).strip("_")
    return f"{today:%Y%m%d}/{safe or 'review'}"


def share_map(text):
    """``/mnt/projects=media;/mnt/vault=vault`` → [("/mnt/projects/", "media"), …]."""
    pairs = []
    for part in filter(None, (text or "").split(";")):
        prefix, _, share = part.partition("=")
        if not share:
            raise ValueError(f"FERRY_SHARE_MAP entry {part!r} is not PREFIX=SHARE")
        pairs.append((prefix.rstrip("/") + "/", share))
    # The longest prefix wins.
    return sorted(pairs, key=lambda p: -len(p[0]))


def as_ferry_item(path, mapping):
    for prefix, share in mapping:
        if path.startswith(prefix):
            return f"share={share}/{path[len(prefix):]}"
    return path


def sequence_item(pattern, frames):
    """``/a/shot.%04d.exr`` and its frame numbers → ``/a/shot.%04d.exr[1001-1100]``."""
    if not frames:
        return None
    return f"{pattern}[{min(frames)}-{max(frames)}]"


def collect_components(ftrack, location, session_id):
    """(previews, sequences, skipped): paths of every version's published components.

    The queries follow ftrack's schema through its relations
    (``ReviewSessionObject.asset_version``, ``Component.version``,
    ``Component.container``), the names its API documents: a review
    session object's version id attribute is ``version_id``, not
    ``asset_version_id``, and a sequence's frames are the components whose
    container it is, each named by its frame number.
    """
    objects = ftrack.query(
        f'select asset_version.id from ReviewSessionObject where review_session.id is "{session_id}"'
    ).all()
    previews, sequences, skipped = [], [], []
    for obj in objects:
        version_id = obj["asset_version"]["id"]
        components = ftrack.query(
            f'select id, name, file_type from Component where version.id is "{version_id}"'
        ).all()
        for component in components:
            ext = (component["file_type"] or "").lower()
            if ext not in PREVIEW_EXTENSIONS + SEQUENCE_EXTENSIONS:
                skipped.append(component["name"])
                continue
            try:
                path = location.get_filesystem_path(component)
            except Exception as e:  # ftrack raises its own errors for unavailable components
                skipped.append(f"{component['name']} ({e})")
                continue
            if ext in PREVIEW_EXTENSIONS:
                previews.append(path)
                continue
            members = ftrack.query(
                f'select name from Component where container.id is "{component["id"]}"'
            ).all()
            frames = [int(m["name"]) for m in members if str(m["name"]).isdigit()]
            sequences.append(sequence_item(path, frames) if frames else path)
    return previews, sequences, skipped


def dialog(ftrack, session_id, shares, today=None):
    session = ftrack.get("ReviewSession", session_id)
    emails = collaborator_emails(ftrack, session_id)
    return {
        "items": [
            {"type": "label", "value": f"Send **{session['name']}** with Ferry."},
            {"type": "textarea", "label": "Recipients (one email per line)", "name": "recipients",
             "value": "\n".join(emails)},
            {"type": "text", "label": "Destination folder", "name": "folder",
             "value": default_folder(session["name"], today)},
            {"type": "enumerator", "label": "Share", "name": "share",
             "data": [{"label": s, "value": s} for s in shares],
             "value": shares[0] if shares else ""},
        ]
    }


def distribute(ftrack, ferry, location, session_id, values, mapping):
    """Makes the delivery; returns the ftrack action result."""
    import ferry as ferry_api  # the client package, for its error type

    session = ftrack.get("ReviewSession", session_id)
    recipients = [r.strip() for r in values.get("recipients", "").replace(",", "\n").splitlines() if r.strip()]
    if not recipients:
        return {"success": False, "message": "No recipients: add at least one email."}
    folder = values.get("folder", "").strip().strip("/") or default_folder(session["name"])
    share = values.get("share", "").strip()
    if not share:
        return {"success": False, "message": "Choose a Ferry share."}
    previews, sequences, skipped = collect_components(ftrack, location, session_id)
    if not previews and not sequences:
        return {"success": False,
                "message": f"{session['name']} has no published movies or image sequences to send."}
    items = [as_ferry_item(p, mapping) for p in previews + sequences]
    try:
        delivery = ferry.create_delivery(
            session["name"],
            files=items,
            recipients=recipients,
            dest=f"share={share}/{folder}",
            priorities={f"*{ext}": "high" for ext in PREVIEW_EXTENSIONS},
        )
    except ferry_api.FerryError as e:
        log.error("Ferry refused the delivery of %s: %s", session["name"], e)
        return {"success": False, "message": f"Ferry refused the delivery: {e.message}"}
    jobs = ", ".join(str(j.id) for j in delivery.jobs)
    message = (f"Ferry delivery {delivery.id}: {len(previews)} movies and {len(sequences)} sequences "
               f"to {len(recipients)} recipients (jobs {jobs}).")
    if skipped:
        message += f" Skipped: {', '.join(skipped)}."
    return {"success": True, "message": message}


# --- ftrack glue (thin: needs a live ftrack server) ---------------------

def allowed_users(text):
    """``FERRY_FTRACK_USERS`` (``alice,bob``): the ftrack usernames who see
    the action; empty: everyone who can see the review session."""
    return {u.strip().lower() for u in (text or "").split(",") if u.strip()}


class DistributeAction:
    def __init__(self, ftrack, ferry_session, mapping, users=frozenset()):
        self.ftrack = ftrack
        self.ferry = ferry_session
        self.mapping = mapping
        self.users = users

    def allowed(self, event):
        if not self.users:
            return True
        user = ((event.get("source") or {}).get("user") or {}).get("username") or ""
        return user.lower() in self.users

    def discover(self, event):
        if selected_review_session(event) is None or not self.allowed(event):
            return None
        return {"items": [{"label": LABEL, "actionIdentifier": IDENTIFIER}]}

    def launch(self, event):
        if not self.allowed(event):
            return {"success": False, "message": "You may not distribute with Ferry; ask your pipeline team."}
        session_id = selected_review_session(event)
        if session_id is None:
            return {"success": False, "message": "Select one review session."}
        values = event["data"].get("values")
        if not values:
            shares = [s.name for s in self.ferry.shares() if s.write]
            return dialog(self.ftrack, session_id, shares)
        location = self.ftrack.pick_location()
        return distribute(self.ftrack, self.ferry, location, session_id, values, self.mapping)

    def register(self):
        """Listens for every user's discover and launch events (one listener
        serves the studio); who sees the action is ``FERRY_FTRACK_USERS``."""
        hub = self.ftrack.event_hub
        hub.subscribe("topic=ftrack.action.discover", self.discover)
        hub.subscribe(f"topic=ftrack.action.launch and data.actionIdentifier={IDENTIFIER}", self.launch)


def main():
    import ftrack_api  # ftrack-python-api, from PyPI

    import ferry

    logging.basicConfig(level=logging.INFO)
    ftrack = ftrack_api.Session(auto_connect_event_hub=True)  # FTRACK_* from the environment
    action = DistributeAction(ftrack, ferry.Session(), share_map(os.environ.get("FERRY_SHARE_MAP")),
                              allowed_users(os.environ.get("FERRY_FTRACK_USERS")))
    action.register()
    log.info("%s is listening for ftrack actions", LABEL)
    ftrack.event_hub.wait()


if __name__ == "__main__":
    main()
