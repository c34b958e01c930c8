"""Router presets on Kubernetes: patch the DGD's frontend args, let the operator roll the frontend, wait for Ready.

Dynamo 1.6.1 reads router flags only at frontend start (dynamo.md §2), so a switch is a frontend
restart. The flags are rendered by ``router_args``, exactly as ``autotune dgd`` renders them; only the
frontend's args change (a JSON merge patch pinned to the resourceVersion that was read: a concurrent
edit answers 409 and the switch re-reads and retries), so workers and their KV caches stay. The
switch lasts from the patch until the operator reports the new generation Ready and the frontend
answers ``/v1/models`` again. Requests in flight on the old frontend pod are not observable from
here (``requests_affected`` None): the pod's drain is the operator's rollout.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx

from autotune.control.actuator import SwitchResult
from autotune.dynamo.flags import flag_era, replace_router_args, router_from_args
from autotune.errors import BackendError, InputError
from autotune.k8s import ANN_TOPOLOGY, FIELD_MANAGER, GROUP, PLURAL
from autotune.k8s.access import FrontendAccess, open_frontend
from autotune.k8s.client import Kube, KubeOptions, call, connect, status_of
from autotune.k8s.housekeeping import served_version
from autotune.k8s.lifecycle import wait_ready
from autotune.k8s.render import frontend_args_patch, frontend_container
from autotune.topology import RouterSettings, parse_topology

CONTROLLER_FIELD_MANAGER = f"{FIELD_MANAGER}-controller"  # who owns the frontend args after a switch
_CONFLICT_ATTEMPTS = 8  # 409s in a row before the switch gives up (another writer keeps editing the graph)


def frontend_url_for(
    dgd: str,
    namespace: str,
    kube: Kube | KubeOptions | None = None,
    *,
    mode: str = "auto",
    port: int = 8000,
    kubectl: str = "kubectl",
) -> FrontendAccess:
    """The way to a DGD's frontend, as trials reach it (``autotune.k8s.access``): ``.url`` is the base URL
    (metrics at ``.url + "/metrics"``); ``close()`` it when done (it may hold a port-forward)."""
    k = kube if isinstance(kube, Kube) else connect(kube or KubeOptions())
    return open_frontend(k, namespace, dgd, port=port, mode=mode, kubectl=kubectl)


def _status(exc: BackendError) -> int | None:
    """The HTTP status behind a ``BackendError`` that ``call`` raised, if the API answered one."""
    return status_of(exc.__cause__) if exc.__cause__ is not None else None


def _retopologised(metadata: dict[str, Any], router: RouterSettings) -> str | None:
    """The graph's autotune topology annotation with ``router``; None when it has none autotune can read."""
    ann = (metadata.get("annotations") or {}).get(ANN_TOPOLOGY)
    try:
        return parse_topology(ann).with_router(router).to_string() if ann else None
    except InputError:
        return None  # someone else's annotation: not ours to rewrite


class K8sActuator:
    """Applies router presets to one DGD by patching its frontend's args (either DGD apiVersion)."""

    name = "k8s-dgd-patch"

    def __init__(
        self,
        kube: Kube,
        dgd: str,
        namespace: str,
        *,
        api_version: str | None = None,
        dynamo_version: tuple[int, int] | None = None,
        frontend_access: str = "auto",
        frontend_port: int = 8000,
        ready_timeout_s: float = 600.0,
        kubectl: str = "kubectl",
    ) -> None:
        self.kube, self.dgd, self.namespace = kube, dgd, namespace
        self.api_version = api_version or served_version(kube)
        self._dynamo_version = dynamo_version
        self.frontend_access, self.frontend_port, self.kubectl = frontend_access, frontend_port, kubectl
        self.ready_timeout_s = ready_timeout_s
        self._access: FrontendAccess | None = None

    # ---- reading -----------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """The DGD as stored now; ``BackendError`` naming it when it does not exist."""
        try:
            obj: Any = call(
                lambda: self.kube.custom.get_namespaced_custom_object(
                    GROUP, self.api_version, self.namespace, PLURAL, self.dgd
                ),
                what=f"get DynamoGraphDeployment {self.namespace}/{self.dgd}",
            )
        except BackendError as exc:
            if _status(exc) == 404:
                raise BackendError(
                    f"kubernetes: DynamoGraphDeployment {self.dgd} not found in namespace {self.namespace} "
                    f"({GROUP}/{self.api_version})"
                ) from None
            raise
        return dict(obj)

    def _args(self, obj: dict[str, Any]) -> list[str]:
        """The frontend container's args; ``InputError`` for a graph whose router is configured elsewhere
        (Dynamo's examples set ``DYN_ROUTER_MODE`` in env and leave the operator's default command)."""
        where = f"DGD {self.namespace}/{self.dgd}"
        hint = (
            "the controller switches graphs whose frontend container carries the router flags in args, "
            "as `autotune dgd` renders them"
        )
        try:
            args = frontend_container(obj).get("args")
        except InputError as exc:
            raise InputError(f"{exc}; {hint}") from None
        if not isinstance(args, list):
            raise InputError(f"{where}: the frontend's main container has no args list; {hint}")
        return [str(a) for a in args]

    def current(self) -> RouterSettings:
        """The preset in the DGD's frontend args (what the frontend runs once the graph is Ready)."""
        try:
            return router_from_args(self._args(self.read()))
        except InputError as exc:
            where = f"DGD {self.namespace}/{self.dgd}"
            raise InputError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None

    def _version_for(self, args: list[str]) -> tuple[int, int]:
        """Flag names to write: the given Dynamo version, else the era the frontend's args already speak."""
        version = self._dynamo_version or flag_era(args)
        if version is None:
            raise InputError(
                f"DGD {self.namespace}/{self.dgd}: the frontend args carry no router weight flag, so their Dynamo "
                "flag names are unknown; pass the Dynamo version"
            )
        return version

    # ---- switching ---------------------------------------------------------------------------
    def apply(self, preset: RouterSettings) -> SwitchResult:
        """Patch the frontend's router flags and wait until the graph is Ready and the frontend serves."""
        started_unix_s, t0 = time.time(), time.monotonic()
        for _ in range(_CONFLICT_ATTEMPTS):
            obj = self.read()
            args = self._args(obj)
            new_args = replace_router_args(args, self._version_for(args), preset)
            if new_args == args:
                return SwitchResult(started_unix_s, time.monotonic() - t0, 0, "frontend already runs these flags")
            patched = self._patch(obj, new_args)
            if patched is not None:
                break
        else:
            raise BackendError(
                f"kubernetes: {self.dgd}: {_CONFLICT_ATTEMPTS} conflicting updates in a row; frontend args not changed"
            )
        generation = patched["metadata"].get("generation")
        try:
            wait_ready(self.kube, self.namespace, self.dgd, version=self.api_version, timeout_s=self.ready_timeout_s)
        except BackendError as exc:
            raise BackendError(
                f"{exc} (the DGD carries the new frontend args, generation {generation}; "
                "the controller's roll-back applies the previous preset)"
            ) from exc
        ready_s = time.monotonic() - t0
        url = self._wait_serving(deadline=t0 + self.ready_timeout_s)
        return SwitchResult(
            started_unix_s,
            time.monotonic() - t0,
            None,
            f"DGD {self.dgd} frontend args patched (generation {generation}); operator rolled the frontend; "
            f"Ready after {ready_s:.1f} s; serving at {url}",
        )

    def _patch(self, obj: dict[str, Any], args: list[str]) -> dict[str, Any] | None:
        """The stored object after the patch, or None on 409 (the graph changed since it was read)."""
        md = obj["metadata"]
        body = frontend_args_patch(obj, args)
        body["metadata"] = {"resourceVersion": md["resourceVersion"]}  # optimistic concurrency
        if topology := _retopologised(md, router_from_args(args)):  # it names the router too: keep it true
            body["metadata"]["annotations"] = {ANN_TOPOLOGY: topology}
        try:
            resp: Any = call(
                lambda: self.kube.custom.patch_namespaced_custom_object(
                    GROUP,
                    self.api_version,
                    self.namespace,
                    PLURAL,
                    self.dgd,
                    copy.deepcopy(body),
                    field_manager=CONTROLLER_FIELD_MANAGER,
                    _content_type="application/merge-patch+json",
                ),
                what=f"patch the frontend of {self.dgd}",
            )
        except BackendError as exc:
            if _status(exc) == 409:
                return None
            raise
        return dict(resp)

    def _wait_serving(self, *, deadline: float) -> str:
        """Wait for /v1/models, re-resolving the way to the frontend after every failure (a port-forward
        dies with the old pod; a LoadBalancer or Service may move)."""
        self.close()
        last = "no answer yet"
        while True:
            try:
                url = self.frontend_url()
                with httpx.Client(timeout=3.0, trust_env=False, verify=False) as http:
                    r = http.get(f"{url}/v1/models")
                if r.status_code == 200 and r.json().get("data"):
                    return url
                last = f"/v1/models answered {r.status_code} {r.text[:80]!r}"
            except (httpx.HTTPError, ValueError, BackendError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            self.close()
            if time.monotonic() > deadline:
                raise BackendError(f"kubernetes: {self.dgd} is Ready but its frontend does not serve: {last}")
            time.sleep(0.2)

    def frontend_url(self) -> str:
        """The frontend's base URL now (re-resolved after each switch); metrics at ``+ "/metrics"``."""
        if self._access is None:
            self._access = frontend_url_for(
                self.dgd,
                self.namespace,
                self.kube,
                mode=self.frontend_access,
                port=self.frontend_port,
                kubectl=self.kubectl,
            )
        return self._access.url

    def close(self) -> None:
        """Stop a port-forward this actuator holds (the DGD is left as it is)."""
        access, self._access = self._access, None
        if access is not None:
            access.close()


def make_k8s_actuator(
    dgd: str,
    namespace: str,
    kube: KubeOptions | None = None,
    *,
    frontend_access: str = "auto",
    ready_timeout_s: float = 600.0,
    dynamo_version: tuple[int, int] | None = None,
) -> K8sActuator:
    """What ``autotune control --dgd NAME -N NAMESPACE`` uses: connect (``--kubeconfig``/``--context``/
    in-cluster), find the served DGD apiVersion, and check the graph exists and its frontend runs the KV router."""
    k = connect(kube or KubeOptions())
    try:
        act = K8sActuator(
            k,
            dgd,
            namespace,
            dynamo_version=dynamo_version,  # flag names; None: the era the frontend's args already speak
            frontend_access=frontend_access,
            ready_timeout_s=ready_timeout_s,
        )
        act.current()  # fail now, with the DGD's name, rather than at the first switch
    except BaseException:
        k.close()
        raise
    return act
