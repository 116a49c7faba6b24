"""Input data scheduling: which sites can run a job, given where its input files are.

DIRAC's InputData and JobScheduling optimisers in one pure function. For each job:

* an LFN the catalog does not know, or with no replica, makes the job fail with
  "Input Data Not Available";
* the candidate sites are those whose storage elements (``Resources.Sites.<s>.SEs``) hold a
  replica of *every* input file; none: "Site candidates do not have all the input data";
* the job's own ``Site`` requirement narrows them (none left: "Impossible InputData * Site
  requirements"), its banned sites are removed.

The replica lookup is the caller's (one bulk catalog call for the whole batch); this module
only decides. The optimiser then queues the job for the candidate sites only.

Example::

    >>> decide({7: ["/demo/f1", "/demo/f2"]},
    ...        replicas={"/demo/f1": ["SE-A", "SE-B"], "/demo/f2": ["SE-B"]},
    ...        se_sites={"SE-A": ["Site.A"], "SE-B": ["Site.B"]})
    {7: InputDataVerdict(sites=('Site.B',), reason='')}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

NOT_AVAILABLE = "Input Data Not Available"
NO_SITE_WITH_ALL = "Site candidates do not have all the input data"
IMPOSSIBLE = "Impossible InputData * Site requirements"


@dataclass(frozen=True)
class InputDataVerdict:
    """The sites where a job's input data all are (sorted), or why the job cannot run."""

    sites: tuple[str, ...] = ()
    reason: str = ""


#: (job -> LFNs) -> job -> verdict; built by the service from the catalog and the config
InputDataCheck = Callable[[dict[int, list[str]]], dict[int, InputDataVerdict]]


def strip_lfn(item: str) -> str:
    """``LFN:/demo/f`` -> ``/demo/f`` (JDLs may carry the prefix, the catalog does not)."""
    return item[4:] if item[:4].upper() == "LFN:" else item


def decide(wanted: Mapping[int, Sequence[str]], *, replicas: Mapping[str, Sequence[str]],
           se_sites: Mapping[str, Sequence[str]]) -> dict[int, InputDataVerdict]:
    """The verdict for each job of ``wanted`` (job -> LFNs), given ``replicas`` (LFN -> SEs
    holding it; a missing LFN is unknown to the catalog) and ``se_sites`` (SE -> sites)."""
    verdicts: dict[int, InputDataVerdict] = {}
    for job_id, lfns in wanted.items():
        candidates: set[str] | None = None
        missing = False
        for lfn in dict.fromkeys(strip_lfn(x) for x in lfns):
            ses = replicas.get(lfn) or ()
            if not ses:
                missing = True
                break
            here = {site for se in ses for site in se_sites.get(se, ())}
            candidates = here if candidates is None else candidates & here
        if missing:
            verdicts[job_id] = InputDataVerdict(reason=NOT_AVAILABLE)
        elif not candidates:
            verdicts[job_id] = InputDataVerdict(reason=NO_SITE_WITH_ALL)
        else:
            verdicts[job_id] = InputDataVerdict(sites=tuple(sorted(candidates)))
    return verdicts


def narrow(verdict: InputDataVerdict, *, sites: Sequence[str],
           banned: Sequence[str]) -> InputDataVerdict:
    """Apply the job's own Site and BannedSites requirements to a positive verdict."""
    if verdict.reason:
        return verdict
    left = set(verdict.sites)
    if sites:
        left &= set(sites)
    left -= set(banned)
    if not left:
        return InputDataVerdict(reason=IMPOSSIBLE)
    return InputDataVerdict(sites=tuple(sorted(left)))


def sites_by_se(site_ses: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Invert ``{site: [SE, ...]}`` (the config's ``Resources.Sites.<s>.SEs``)."""
    out: dict[str, list[str]] = {}
    for site, ses in site_ses.items():
        for se in ses:
            out.setdefault(se, []).append(site)
    return out
