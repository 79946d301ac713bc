"""`facestream identity`: read a running service's identities through the identity API, and correct them
through the commands topic.

    facestream identity list --space S                 largest first (--limit, --offset)
    facestream identity show ID --space S
    facestream identity search PHOTO --space S         the largest accepted face of the photo (-k)
    facestream identity merge ID ID... --space S       commands: printed with their command id, applied once
    facestream identity split FACE... --space S
    facestream identity reject FACE --cluster ID --space S
    facestream identity label ID NAME --space S        (--clear instead of NAME)
    facestream identity forget --faces F... | --cluster ID | --camera C | --before UNIX_TIME --space S
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streaming.commands import Command, ForgetCommand, LabelCommand, MergeCommand, RejectCommand, SplitCommand
from streaming.messages import FaceRecord
from streaming.redact import read_secret
from streaming.sources import BadInput, FrameSource
from workers.errors import WorkerError
from workers.identity.command_sender import CommandNotSentError, CommandSender
from workers.settings import Settings


class IdentityCommandError(WorkerError, RuntimeError):
    """The API or the broker refused, or a photo had no face: the message says which."""


def add_identity_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    identity = commands.add_parser("identity", help="list, show, search and correct a running service's identities")
    actions = identity.add_subparsers(dest="action", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--space", default="default", help="identity space (default: default)")
    common.add_argument("--api", help="identity API URL (default: from FACESTREAM_WORKER__API_HOST and _PORT)")
    common.add_argument(
        "--token-file", type=Path, help="bearer token file (default: FACESTREAM_WORKER__API_TOKEN_FILE)"
    )
    listing = actions.add_parser("list", parents=[common], help="identities, largest first")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--offset", type=int, default=0)
    actions.add_parser("show", parents=[common], help="one identity").add_argument("id", type=int)
    search = actions.add_parser("search", parents=[common], help="the identities nearest the face in a photo")
    search.add_argument("photo", type=Path)
    search.add_argument("-k", type=int, default=5)
    actions.add_parser("merge", parents=[common], help="these clusters are one person").add_argument(
        "ids", type=int, nargs="+"
    )
    actions.add_parser("split", parents=[common], help="these faces are someone else").add_argument("faces", nargs="+")
    reject = actions.add_parser("reject", parents=[common], help="this face is not this person")
    reject.add_argument("face")
    reject.add_argument("--cluster", type=int, required=True)
    label = actions.add_parser("label", parents=[common], help="name a cluster (--clear: remove its name)")
    label.add_argument("id", type=int)
    label.add_argument("name", nargs="?")
    label.add_argument("--clear", action="store_true")
    forget = actions.add_parser("forget", parents=[common], help="erase faces: every trace of them goes")
    selection = forget.add_mutually_exclusive_group(required=True)
    selection.add_argument("--faces", nargs="+", metavar="FACE")
    selection.add_argument("--cluster", type=int)
    selection.add_argument("--camera")
    selection.add_argument("--before", type=float, metavar="UNIX_TIME", help="every face seen before this time")


def run_identity(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """Does what ``args`` asks; returns the JSON to print."""
    if args.action in ("merge", "split", "reject", "label", "forget"):
        return _send(_command(args), settings)
    if args.action == "list":
        return _get(args, settings, f"identities?limit={args.limit}&offset={args.offset}")
    if args.action == "show":
        return _get(args, settings, f"identities/{args.id}")
    return _get(args, settings, "search", {"embedding": _photo_embedding(args.photo, settings), "k": args.k})


def _command(args: argparse.Namespace) -> Command:
    common = {"command_id": f"cli-{uuid.uuid4().hex}", "space": args.space}
    if args.action == "merge":
        return MergeCommand(clusters=args.ids, **common)
    if args.action == "split":
        return SplitCommand(faces=args.faces, **common)
    if args.action == "reject":
        return RejectCommand(face=args.face, cluster=args.cluster, **common)
    if args.action == "forget":
        return ForgetCommand(faces=args.faces, cluster=args.cluster, camera=args.camera, before=args.before, **common)
    if args.clear == (args.name is not None):
        raise IdentityCommandError("label: give a NAME, or --clear")
    return LabelCommand(cluster=args.id, name=args.name, **common)


def _send(command: Command, settings: Settings) -> dict[str, Any]:
    try:
        topic = CommandSender(settings.kafka).send(command)
    except CommandNotSentError as exc:
        raise IdentityCommandError(str(exc)) from exc
    return {"sent": json.loads(command.to_json()), "topic": topic}


def _get(args: argparse.Namespace, settings: Settings, path: str, body: object = None) -> dict[str, Any]:
    config = settings.worker
    base = args.api or f"http://{config.api_host}:{config.api_port or 9500}"
    token = read_secret(args.token_file or config.api_token_file)
    if not token:
        raise IdentityCommandError("the identity API needs a token: --token-file or FACESTREAM_WORKER__API_TOKEN_FILE")
    if not base.startswith(("http://", "https://")):
        raise IdentityCommandError(f"the identity API URL is http:// or https://, not {base}")
    space = quote(args.space, safe="")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        f"{base.rstrip('/')}/v1/spaces/{space}/{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - checked above
            answer: dict[str, Any] = json.loads(response.read())
            return answer
    except urllib.error.HTTPError as exc:
        detail = json.loads(exc.read() or b"{}").get("error", exc.reason)
        raise IdentityCommandError(f"the identity API answered {exc.code}: {detail}") from exc
    except urllib.error.URLError as exc:
        raise IdentityCommandError(f"the identity API at {base} is unreachable: {exc.reason}") from exc


def _photo_embedding(photo: Path, settings: Settings) -> str:
    """The embedding (base64) of the largest face of ``photo`` that passes the quality gate."""
    from models.analyzer import FaceAnalyzer, largest_accepted  # noqa: PLC0415 - only search loads the models

    frames = [item for item in FrameSource(str(photo)) if not isinstance(item, BadInput)]
    if not frames:
        raise IdentityCommandError(f"{photo} is not an image this can read")
    faces = FaceAnalyzer.from_settings(settings.models).analyze([frames[0].image])[0]
    largest = largest_accepted(faces)
    if largest is None or largest.embedding is None:
        raise IdentityCommandError(f"no face of {photo} passed the quality gate ({len(faces)} detected)")
    return FaceRecord.encode_embedding(largest.embedding)
