"""``medrefine serve``: its flags, mapped onto :class:`ServerConfig` (grpc loads only when run)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from medrefine.errors import InputError


def add_parser(sub: Any) -> None:
    """Register ``serve`` on the ``medrefine`` subparsers."""
    p = sub.add_parser("serve", help="serve sessions over gRPC (proto/medrefine/v1/refine.proto)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    p.add_argument("--port", type=int, default=50051, help="port (0: any free port)")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument(
        "--web",
        action="store_true",
        help="also serve the browser viewer and gRPC-Web on --web-port (docs/viewer.md)",
    )
    p.add_argument("--web-port", type=int, default=8080, help="the viewer's HTTP port (0: any)")
    p.add_argument("--web-port-file", type=Path, help="write the viewer's port here once listening")
    p.add_argument("--models", default="", help="comma-separated model names (default: all)")
    p.add_argument("--feature-cache-mb", type=int, default=2048, help="backbone feature cache")
    p.add_argument("--image-store-mb", type=int, default=1024, help="uploaded images kept")
    p.add_argument("--max-sessions", type=int, default=64)
    p.add_argument("--max-image-mb", type=int, default=1024, help="largest image upload")
    p.add_argument("--idle-ttl", type=float, default=3600.0, help="seconds; 0 = never")
    p.add_argument("--workers", type=int, default=2, help="refines running at once")
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime", "cuda", "tensorrt", "auto"],
        help="what runs the backbones (auto: the fastest here; logged at start)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate (with --tls-key)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--client-ca", type=Path, help="PEM CA for client certificates (mutual TLS)")
    p.add_argument("--token-file", type=Path, help="file holding the bearer token to require")
    p.add_argument("--journal-dir", type=Path, help="journal every interaction here (SQLite)")
    p.add_argument(
        "--journal",
        help="journal here: a directory (SQLite, as --journal-dir) or a postgresql:// URL "
        "(replicas on several machines share it; needs the postgres extra)",
    )
    p.add_argument(
        "--upload-idle-s",
        type=float,
        default=30.0,
        help="refuse an image upload that sends nothing for this long (seconds)",
    )
    p.add_argument(
        "--max-upload-mb-total",
        type=int,
        default=2048,
        help="memory all image uploads in progress may hold together (MiB)",
    )
    p.add_argument("--max-uploads", type=int, default=128, help="image uploads served at once")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=10.0,
        help="seconds SIGTERM lets running calls finish before the process exits",
    )
    p.add_argument(
        "--site-dir",
        type=Path,
        help="keep one site per model here (DIR/<model>.site): accepted masks teach new sessions",
    )
    p.add_argument(
        "--mmap-threshold-kb",
        type=int,
        default=1024,
        help="fix glibc's mmap threshold (KiB; 0 keeps its adaptive one): bounds memory growth",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=run)


def _read(path: Path | None) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from exc


def _journal_url(args: argparse.Namespace) -> str | None:
    """``--journal`` when it is a PostgreSQL URL."""
    where: str | None = args.journal
    return where if where and where.startswith(("postgresql://", "postgres://")) else None


def _journal_dir(args: argparse.Namespace) -> Path | None:
    """``--journal-dir``, or ``--journal`` when it is a directory."""
    if args.journal and args.journal_dir:
        raise InputError("--journal and --journal-dir name the same thing: give one")
    if args.journal and _journal_url(args) is None:
        return Path(args.journal)
    directory: Path | None = args.journal_dir
    return directory


def run(args: argparse.Namespace) -> int:
    """Build the config from ``args`` and serve until SIGTERM/SIGINT."""
    from medrefine.serve import ServerConfig, serve

    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    token = _read(args.token_file)
    config = ServerConfig(
        models=tuple(m for m in args.models.split(",") if m),
        max_image_bytes=args.max_image_mb << 20,
        max_sessions=args.max_sessions,
        idle_ttl_s=args.idle_ttl,
        workers=args.workers,
        feature_cache_bytes=args.feature_cache_mb << 20,
        image_store_bytes=args.image_store_mb << 20,
        journal_dir=_journal_dir(args),
        journal_url=_journal_url(args),
        upload_idle_s=args.upload_idle_s,
        max_upload_bytes_total=args.max_upload_mb_total << 20,
        max_uploads=args.max_uploads,
        drain_s=args.drain_timeout,
        site_dir=args.site_dir,
        token=None if token is None else token.decode().strip(),
        tls_cert=_read(args.tls_cert),
        tls_key=_read(args.tls_key),
        client_ca=_read(args.client_ca),
        backend=args.backend,
    )
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {args.port}")
    if not 0 <= args.web_port <= 65535:
        raise InputError(f"--web-port must be in 0..65535, got {args.web_port}")
    if args.web_port_file is not None and not args.web:
        raise InputError("--web-port-file needs --web")
    if args.mmap_threshold_kb:
        from medrefine.serve.allocator import fix_mmap_threshold

        outcome = fix_mmap_threshold(args.mmap_threshold_kb << 10)
        logging.getLogger(__name__).info("glibc mmap threshold %s", outcome)
    web_port = args.web_port if args.web else None
    return serve(args.host, args.port, config, args.port_file, web_port, args.web_port_file)
