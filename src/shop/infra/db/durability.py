"""Whether a database server keeps the commits it acknowledges: the settings the distributed mode
needs, judged on what the server reports (servers.weak_durability reads them).

A saga step that committed is done for the other services: they go on and keep their own part. A
server that acknowledges a commit before it is on disk loses the last ones when the machine crashes
or the power goes, and the order comes back torn (its stock taken and no order, or paid and not
confirmed), as a power cut tears the embedded mode's files. docs/design.md, "Durability below the
shop (distributed mode)". Pure: no connection here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LOST_COMMITS = "an OS crash or power cut on that server loses the last commits it acknowledged"
TORN_PAGES = ("a page half written when the power goes is not repaired at the restart: the database "
              "can come back corrupt after an OS crash or power cut")
# What each engine is asked; the shop's own connection to each of its databases reads them, so a
# per-database or per-role setting (ALTER DATABASE ... SET synchronous_commit) counts.
SETTINGS = {
    "postgresql": ("fsync", "synchronous_commit", "full_page_writes"),
    "mysql": ("innodb_flush_log_at_trx_commit", "sync_binlog", "log_bin", "innodb_doublewrite"),
}


@dataclass(frozen=True)
class Weakness:
    setting: str
    value: str
    wanted: str
    risk: str


def _on(value: object) -> bool:
    return str(value).strip().lower() in ("on", "1", "true", "yes")


def judge(dialect: str, seen: Mapping[str, object]) -> list[Weakness]:
    """What is weaker than the durability the saga assumes; a setting the server did not report is
    not judged (an older server, another engine)."""
    out = []

    def weak(setting: str, wanted: str, risk: str) -> None:
        out.append(Weakness(setting, str(seen[setting]), wanted, risk))

    if dialect == "postgresql":
        if "fsync" in seen and not _on(seen["fsync"]):
            weak("fsync", "on", LOST_COMMITS + ", and can leave the whole database cluster corrupt")
        # local, remote_write and remote_apply all flush the primary's WAL before answering; only off
        # answers first (the WAL writer flushes within 3 × wal_writer_delay).
        if str(seen.get("synchronous_commit", "on")).strip().lower() == "off":
            weak("synchronous_commit", "on (or local, remote_write, remote_apply)",
                 LOST_COMMITS + " (up to 3 × wal_writer_delay of them)")
        if "full_page_writes" in seen and not _on(seen["full_page_writes"]):
            weak("full_page_writes", "on", TORN_PAGES)
    elif dialect == "mysql":
        # MariaDB's 3 flushes at prepare and at commit: durable too.
        if str(seen.get("innodb_flush_log_at_trx_commit", "1")).strip() not in ("1", "3"):
            weak("innodb_flush_log_at_trx_commit", "1",
                 LOST_COMMITS + " (about the last second: the redo log is flushed once a second)")
        # With the binary log on, it decides crash recovery: InnoDB rolls back a transaction it had
        # prepared if the log lacks it, and an unflushed log can lack it.
        if _on(seen.get("log_bin", "0")) and str(seen.get("sync_binlog", "1")).strip() != "1":
            weak("sync_binlog", "1 (the binary log is on)",
                 LOST_COMMITS + " (crash recovery rolls back what the unflushed binary log lacks)")
        # MySQL's DETECT_ONLY keeps no page copies either; its DETECT_AND_RECOVER and MariaDB's fast do.
        if str(seen.get("innodb_doublewrite", "1")).strip().lower() in ("0", "off", "detect_only"):
            weak("innodb_doublewrite", "ON", TORN_PAGES)
    return out


def durability_warnings(server: str, dialect: str, seen: Mapping[str, Mapping[str, object]]) -> list[str]:
    """One line per weak setting of one server (`seen`: each database's settings), naming the
    databases it holds for when a per-database setting weakens only some of them."""
    where: dict[Weakness, list[str]] = {}
    for database, settings in seen.items():
        for w in judge(dialect, settings):
            where.setdefault(w, []).append(database)
    return [f"{dialect} server {server}: {w.setting} is {w.value} (in {', '.join(dbs)}); it should be "
            f"{w.wanted}: {w.risk}, and the orders those commits belonged to come back torn"
            for w, dbs in where.items()]
