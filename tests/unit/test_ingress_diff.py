"""portway.ingress.diff: reload or runtime API, and which commands."""

from __future__ import annotations

from portway.ingress import AdminState
from portway.ingress.diff import (
    carry_server_state,
    runtime_commands,
    slot_commands,
    structural_changes,
)
from portway.ingress.runtime import RuntimeServer
from portway.ingress.slots import NO_REPLICA, SlotView

READY = AdminState.READY
MAINT = AdminState.MAINT
DRAIN = AdminState.DRAIN


def held(address: str = "127.0.0.1", port: int = 30001, admin: AdminState = READY) -> RuntimeServer:
    bits = {READY: 0, MAINT: 1, DRAIN: 8}[admin]
    return RuntimeServer("be_web", "s1", address, port, admin, bits, 2)


def view(port: int | None = 30001, admin: AdminState = READY, replica: str = "web-0") -> SlotView:
    address = None if port is None else "127.0.0.1"
    return SlotView("c1" if port else None, address, port, admin, replica)


# --- one slot ---------------------------------------------------------------


def test_nothing_to_do() -> None:
    assert slot_commands("be_web/s1", view(), held(), map_file="m", replica_now="web-0") == []


def test_readiness_flip_is_one_command() -> None:
    assert slot_commands(
        "be_web/s1", view(admin=MAINT), held(), map_file=None, replica_now=None
    ) == ["set server be_web/s1 state maint"]
    assert slot_commands(
        "be_web/s1", view(admin=DRAIN), held(admin=MAINT), map_file=None, replica_now=None
    ) == ["set server be_web/s1 state drain"]


def test_new_endpoint_in_a_busy_slot_goes_through_maintenance() -> None:
    commands = slot_commands(
        "be_web/s1",
        view(port=30002, replica="web-1"),
        held(),
        map_file="/m.map",
        replica_now="web-0",
    )
    assert commands == [
        "set server be_web/s1 state maint",
        "set server be_web/s1 addr 127.0.0.1 port 30002",
        "set map /m.map s1 web-1",
        "set server be_web/s1 state ready",
    ]


def test_new_endpoint_in_a_free_slot() -> None:
    commands = slot_commands(
        "be_web/s1", view(port=30002), held(port=1, admin=MAINT), map_file=None, replica_now=None
    )
    assert commands == [
        "set server be_web/s1 addr 127.0.0.1 port 30002",
        "set server be_web/s1 state ready",
    ]


def test_freed_slot_goes_to_maintenance_and_keeps_its_address() -> None:
    commands = slot_commands(
        "be_web/s1",
        view(port=None, admin=MAINT, replica=NO_REPLICA),
        held(),
        map_file="/m.map",
        replica_now="web-0",
    )
    assert commands == ["set map /m.map s1 -", "set server be_web/s1 state maint"]


def test_unknown_map_value_is_set_again() -> None:
    assert slot_commands("be_web/s1", view(), held(), map_file="/m.map", replica_now=None) == [
        "set map /m.map s1 web-0"
    ]


# --- a whole state ----------------------------------------------------------


def test_new_copies_take_traffic_before_old_ones_stop() -> None:
    views = {
        "web": (
            SlotView("old", "127.0.0.1", 30001, MAINT, "web-0"),
            SlotView("new", "127.0.0.1", 30002, READY, "web-1"),
            SlotView("leaving", "127.0.0.1", 30003, DRAIN, "web-2"),
            SlotView(None, None, None, MAINT, "-"),  # HAProxy has no s4: left alone
        )
    }
    actual = {
        ("be_web", "s1"): RuntimeServer("be_web", "s1", "127.0.0.1", 30001, READY, 0, 2),
        ("be_web", "s2"): RuntimeServer("be_web", "s2", "127.0.0.1", 1, MAINT, 5, 0),
        ("be_web", "s3"): RuntimeServer("be_web", "s3", "127.0.0.1", 30003, READY, 0, 2),
    }
    commands = runtime_commands(
        views,
        {"web": "be_web"},
        actual,
        map_files={},
        replicas_now={},
    )
    assert commands == [
        "set server be_web/s2 addr 127.0.0.1 port 30002",
        "set server be_web/s2 state ready",
        "set server be_web/s3 state drain",
        "set server be_web/s1 state maint",
    ]


def test_map_values_known_after_a_reload_are_not_sent_again() -> None:
    views = {"web": (SlotView("a", "127.0.0.1", 30001, READY, "web-0"),)}
    actual = {("be_web", "s1"): RuntimeServer("be_web", "s1", "127.0.0.1", 30001, READY, 0, 2)}
    kwargs = {"map_files": {"web": "/m.map"}}
    assert (
        runtime_commands(
            views, {"web": "be_web"}, actual, replicas_now={"web": ("web-0",)}, **kwargs
        )
        == []
    )
    assert runtime_commands(views, {"web": "be_web"}, actual, replicas_now={}, **kwargs) == [
        "set map /m.map s1 web-0"
    ]


# --- reload or not ----------------------------------------------------------


SUMMARY = {
    "listeners": {"127.0.0.1:80": [["http", None, None, "web"]]},
    "backends": {"web": {"mode": "http", "check": ["tcp", None, 1, 1, 2, 1], "slots": 4}},
    "settings": "s",
}


def test_same_digest_no_reload() -> None:
    assert structural_changes(SUMMARY, SUMMARY, "d", "d") == ()


def test_reasons_in_words() -> None:
    new = {
        "listeners": {
            "127.0.0.1:80": [["http", "a.example", None, "web"]],
            "127.0.0.1:81": [["tcp", None, None, "db"]],
        },
        "backends": {
            "web": {"mode": "http", "check": ["http", "/", 1, 1, 2, 1], "slots": 8},
            "db": {"mode": "tcp", "check": ["tcp", None, 1, 1, 2, 1], "slots": 4},
        },
        "settings": "t",
    }
    assert structural_changes(SUMMARY, new, "d1", "d2") == (
        "listener 127.0.0.1:81 added",
        "routes on 127.0.0.1:80 changed",
        "backend db added",
        "backend web health check changed",
        "backend web slots 4 -> 8",
        "ingress settings changed",
    )
    assert structural_changes(new, SUMMARY, "d2", "d1")[:2] == (
        "listener 127.0.0.1:81 removed",
        "routes on 127.0.0.1:80 changed",
    )


def test_no_record_means_reload() -> None:
    assert structural_changes(None, SUMMARY, "", "d") == ("no record of the running configuration",)


def test_same_summary_other_digest_is_still_a_reload() -> None:
    assert structural_changes(SUMMARY, SUMMARY, "d1", "d2") == (
        "rendered configuration changed (portway version)",
    )


# --- the server-state file a reload starts from -----------------------------

DUMP = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be_web 1 s1 127.0.0.1 2 0 1 1 1 6 3 2 6 0 0 0 - 30001 - 0 0 - - 0
3 be_web 2 s2 127.0.0.1 0 0 1 1 0 8 2 0 6 0 0 0 - 30002 - 0 0 - - 0
3 be_web 3 s3 127.0.0.1 2 1 1 1 1 1 0 0 14 0 0 0 - 30003 - 0 0 - - 0
3 be_web 4 s4 127.0.0.1 0 5 1 1 1 1 0 0 14 0 0 0 - 1 - 0 0 - - 0
4 be_gone 1 s1 127.0.0.1 2 0 1 1 1 6 3 2 6 0 0 0 - 30009 - 0 0 - - 0
"""


def test_carry_server_state_keeps_health_of_slots_that_stay() -> None:
    desired = {
        ("be_web", "s1"): SlotView("a", "127.0.0.1", 30001, READY, "web-0"),  # stays
        ("be_web", "s2"): SlotView("b", "127.0.0.1", 30002, DRAIN, "web-1"),  # DOWN, draining
        ("be_web", "s3"): SlotView("c", "127.0.0.1", 39999, READY, "web-2"),  # moved
        ("be_web", "s4"): SlotView(None, None, None, MAINT, "-"),  # free
    }
    text = carry_server_state(DUMP, desired)
    lines = text.splitlines()
    assert lines[0] == "1"
    assert lines[1].startswith("# be_id be_name srv_id")
    assert lines[2:] == [
        "3 be_web 1 s1 127.0.0.1 2 0 1 1 1 6 3 2 6 0 0 0 - 30001 - 0 0 - - 0",
        "3 be_web 2 s2 127.0.0.1 0 1 1 1 0 8 2 0 6 0 0 0 - 30002 - 0 0 - - 0",
    ]


def test_carry_server_state_of_nothing() -> None:
    assert carry_server_state("", {}) == "1\n"
