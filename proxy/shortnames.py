"""Short names (`busybox`, `ns/app`): which fully qualified references podman would try.

An alias wins; otherwise each `unqualified-search-registries` entry in order. With
`short-name-mode = "enforcing"`, more than one candidate needs a prompt, which a server
cannot show, so it is an error, as podman's is without a TTY.
"""

from __future__ import annotations

from .errors import MirrorlabError
from .reference import ImageReference, InvalidReference, parse_docker_reference
from .registries_conf import RegistriesConf


class ShortNameError(MirrorlabError):
    """The short name cannot be resolved without asking a person."""


def resolve_short_name(config: RegistriesConf, name: str, tag_or_digest: str
                       ) -> list[ImageReference]:
    """The candidates for `name` with `:tag`/`@digest` appended, in the order to try them."""
    separator = "@" if ":" in tag_or_digest else ":"
    suffix = f"{separator}{tag_or_digest}"
    alias = config.aliases.get(name)
    if alias is not None:
        return [parse_docker_reference(alias + suffix)]
    registries = config.unqualified_search_registries or ()
    if not registries:
        origin = config.unqualified_search_origin or config.main_path
        raise ShortNameError(f'short-name "{name}" did not resolve to an alias and no '
                             f'unqualified-search registries are defined in "{origin}"')
    if config.short_name_mode == "enforcing" and len(registries) > 1:
        raise ShortNameError(
            f'short-name "{name}" is ambiguous: it could come from any of '
            f'{", ".join(registries)}, and short-name-mode "enforcing" needs a prompt '
            "(add an [aliases] entry, or pull a fully qualified name)")
    candidates = []
    for registry in registries:
        try:
            candidates.append(parse_docker_reference(f"{registry}/{name}{suffix}"))
        except InvalidReference as error:
            raise ShortNameError(f'short-name "{name}" under "{registry}": {error}') from None
    return candidates
