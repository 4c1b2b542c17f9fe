"""Settings: the one place for paths and knobs, read once from the environment.

| variable          | default                     | meaning                                        |
|-------------------|-----------------------------|------------------------------------------------|
| SLEUTH_HOME       | ./.sleuth                   | working directory for the store and models     |
| SLEUTH_DB         | $SLEUTH_HOME/sleuth.duckdb  | the DuckDB file                                |
| SLEUTH_MODELS     | $SLEUTH_HOME/models         | one sub-directory per model version            |
| SLEUTH_ANALYST    | the OS login name           | the local operator (CLI, local-mode app)       |
| SLEUTH_ROLES      | (none)                      | identity/group -> role, see analyst/access.py  |
| SLEUTH_DEFAULT_ROLE | analyst                   | role of a signed-in identity not in SLEUTH_ROLES (`none`: refused) |
| SLEUTH_SAMPLE_DIR | <repo>/sample_data          | where `demo` finds the committed sample        |
| SLEUTH_DEVICE     | auto                        | auto / cpu / cuda: where models train and run  |
| SLEUTH_SECOND_REVIEW_SHARE | 0.1     | share of decided cases sent to a blind second review (by a hash of case_id) |
| SLEUTH_STREAM     | (none)                      | the app streams new events from kafka://HOST:PORT/TOPIC or a drop folder |
| SLEUTH_KAFKA_CONFIG | (none)                    | extra Kafka consumer settings as a JSON object (SASL, TLS) |
"""
from __future__ import annotations

import getpass
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from analyst.access import Actor, RoleMap
from models.contracts import check_device

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    home: Path
    db_path: Path
    model_dir: Path
    sample_dir: Path
    analyst: str | None = None
    device: str = "auto"
    second_review_share: float = 0.1
    roles: RoleMap = field(default_factory=RoleMap)
    stream: str | None = None

    @property
    def local_user(self) -> str:
        """The local operator's name: SLEUTH_ANALYST, else the OS login name."""
        if self.analyst:
            return self.analyst
        try:
            return getpass.getuser()
        except Exception:  # no login name (some containers): still a name on the rows
            return "local"

    def local_actor(self) -> Actor:
        """The local operator as an Actor (admin unless SLEUTH_ROLES names them)."""
        return self.roles.local(self.local_user)

    @classmethod
    def from_env(cls, db: str | os.PathLike | None = None, env: dict | None = None) -> "Settings":
        """Build settings from the environment; an explicit `db` (the CLI's --db) wins."""
        env = os.environ if env is None else env
        home = Path(env.get("SLEUTH_HOME", ".sleuth")).expanduser()
        db_path = Path(db) if db else Path(env.get("SLEUTH_DB", home / "sleuth.duckdb"))
        model_dir = Path(env.get("SLEUTH_MODELS", home / "models"))
        sample_dir = Path(env.get("SLEUTH_SAMPLE_DIR", REPO_ROOT / "sample_data"))
        device = check_device(env.get("SLEUTH_DEVICE", "auto"), "SLEUTH_DEVICE")
        share_text = env.get("SLEUTH_SECOND_REVIEW_SHARE", "0.1")
        try:
            share = float(share_text)
        except ValueError:
            share = float("nan")
        if not 0.0 <= share <= 1.0:  # also refuses nan
            raise ValueError(f"SLEUTH_SECOND_REVIEW_SHARE={share_text!r}: expected a share in [0, 1], e.g. 0.1")
        return cls(
            home=home,
            db_path=db_path.expanduser(),
            model_dir=model_dir.expanduser(),
            sample_dir=sample_dir,
            analyst=(env.get("SLEUTH_ANALYST") or "").strip() or None,
            device=device,
            second_review_share=share,
            roles=RoleMap.parse(env.get("SLEUTH_ROLES"), env.get("SLEUTH_DEFAULT_ROLE")),
            stream=(env.get("SLEUTH_STREAM") or "").strip() or None,
        )

    def with_db(self, db: str | os.PathLike) -> "Settings":
        return replace(self, db_path=Path(db))
