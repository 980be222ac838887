"""postguard's configuration: `postguard.toml` loaded into frozen, validated dataclasses.

Owns the config file format and its meaning. Modules:

- `schema`: the dataclasses (`Config` and one ``*Settings`` per table) and all defaults;
- `load`: `load_config` / `default_config`, TOML to `Config`, every error a `ConfigError`;
- `reader`: the typed TOML table accessor `load` is built from (internal);
- `units`: sizes and durations with units (``"50MiB"``, ``"30s"``) and the unit constants;
- `syntax`: listen addresses, local domains and mailboxes, TOML string quoting;
- `weakenings`: the closed catalogue of security-weakening settings, `find_weakenings`;
- `sample`: `render_sample`, a commented `postguard.toml` that loads back to the same config;
- `errors`: `ConfigError`.

Must not: reach into other components. Components receive settings (or options built from
them); they never read the file themselves (STYLE.md §3).
"""

from postguard.config.errors import ConfigError
from postguard.config.load import default_config, load_config
from postguard.config.sample import render_sample
from postguard.config.schema import (
    AuthSettings,
    CertificateSettings,
    Config,
    DeliverySettings,
    LimitsSettings,
    ListenerSettings,
    LmtpSettings,
    LocalSettings,
    LogSettings,
    OAuthSettings,
    QueueSettings,
    ServerSettings,
    TlsMode,
    TlsSettings,
)
from postguard.config.weakenings import Weakening, find_weakenings

__all__ = [
    "AuthSettings",
    "CertificateSettings",
    "Config",
    "ConfigError",
    "DeliverySettings",
    "LimitsSettings",
    "ListenerSettings",
    "LmtpSettings",
    "LocalSettings",
    "LogSettings",
    "OAuthSettings",
    "QueueSettings",
    "ServerSettings",
    "TlsMode",
    "TlsSettings",
    "Weakening",
    "default_config",
    "find_weakenings",
    "load_config",
    "render_sample",
]
