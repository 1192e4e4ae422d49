"""portway.ingress.runtime: HAProxy's answers, parsed (captured from HAProxy 2.6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portway.ingress import AdminState, OpState
from portway.ingress.runtime import (
    MAX_SOCKET_PATH,
    admin_from_bits,
    check_socket_path,
    command_succeeded,
    op_state,
    parse_info,
    parse_proc,
    parse_servers_state,
    parse_stat,
)

SHOW_PROC = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
9862            master          3 [failed: 0]   0d00h00m15s     2.6.12-1+deb12u4
# workers
12279           worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
11169           worker          1               0d00h00m07s     2.6.12-1+deb12u4
# programs

"""

SHOW_PROC_FAILED = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
28612           master          1 [failed: 1]   0d00h00m03s     2.6.12-1+deb12u4
# workers
28615           worker          1               0d00h00m03s     2.6.12-1+deb12u4
# programs
"""

SERVERS_STATE = """\
1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 be_web.default:http 1 s1 127.0.0.1 2 0 1 1 1 6 3 2 6 0 0 0 - 19001 - 0 0 - - 0
3 be_web.default:http 2 s2 127.0.0.1 0 8 1 1 0 8 2 0 6 0 0 0 - 19003 - 0 0 - - 0
3 be_web.default:http 3 s3 127.0.0.1 0 5 1 1 1 1 0 0 14 0 0 0 - 1 - 0 0 - - 0
3 be_web.default:http 4 s4 ::1 2 4 1 1 1 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0

"""

STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,"
    "throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,"
    "check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"
    "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
    "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,"
    "agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,"
    "agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,"
    "intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,"
    "qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,"
    "need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,"
    "ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,"
    "h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,"
    "h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,"
    "h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,"
    "h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,"
    "h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,,"
)
COLUMNS = STAT_HEADER[2:].rstrip(",").split(",")


def stat_row(**values: str) -> str:
    return ",".join(values.get(column, "") for column in COLUMNS) + ","


SHOW_STAT = "\n".join(
    [
        STAT_HEADER,
        stat_row(pxname="fe_x", svname="FRONTEND", scur="0", status="OPEN"),
        stat_row(
            pxname="be_web",
            svname="s1",
            scur="3",
            status="UP",
            lastchg="12",
            check_status="L7OK",
            check_desc="Layer7 check passed",
            addr="127.0.0.1:19001",
        ),
        stat_row(
            pxname="be_web",
            svname="s2",
            scur="0",
            status="DOWN",
            lastchg="0",
            check_status="* L4CON",
            check_desc="Layer4 connection problem",
            addr="[::1]:19003",
        ),
        stat_row(
            pxname="be_web",
            svname="s3",
            scur="0",
            status="MAINT",
            lastchg="1",
            addr="127.0.0.1:1",
        ),
        stat_row(pxname="be_web", svname="BACKEND", scur="3", status="UP", lastchg="1"),
        "",
    ]
)


def test_parse_proc() -> None:
    info = parse_proc(SHOW_PROC)
    assert info.master_pid == 9862 and info.reloads == 3 and info.failed_reloads == 0
    assert info.workers == ((12279, 0),) and info.worker_pid == 12279
    assert info.old_workers == (11169,)
    assert not info.reload_failed


def test_parse_proc_after_a_failed_reload() -> None:
    info = parse_proc(SHOW_PROC_FAILED)
    assert info.reload_failed and info.failed_reloads == 1
    assert info.workers == ((28615, 1),)  # the old worker goes on
    assert parse_proc(SHOW_PROC, reload_failed=True).reload_failed  # from the prompt


def test_parse_proc_of_nothing() -> None:
    assert parse_proc("").worker_pid is None


def test_parse_info() -> None:
    assert parse_info("Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime: 0d\n").pid == 4242
    with pytest.raises(ValueError, match="no Pid"):
        parse_info("Unknown command.")


def test_parse_servers_state() -> None:
    servers = parse_servers_state(SERVERS_STATE)
    assert list(servers) == [("be_web.default:http", f"s{n}") for n in range(1, 5)]
    s1, s2, s3, s4 = servers.values()
    assert (s1.address, s1.port, s1.admin, s1.op_state) == ("127.0.0.1", 19001, AdminState.READY, 2)
    assert (s2.port, s2.admin, s2.op_state) == (19003, AdminState.DRAIN, 0)
    assert s3.admin is AdminState.MAINT  # FMAINT + CMAINT ("disabled")
    assert (s4.address, s4.admin) == ("::1", AdminState.READY)  # CMAINT alone serves


def test_parse_servers_state_of_nothing() -> None:
    assert parse_servers_state("") == {}
    assert parse_servers_state("No such backend.\n") == {}


@pytest.mark.parametrize(
    ("bits", "admin"),
    [
        (0, AdminState.READY),
        (4, AdminState.READY),
        (1, AdminState.MAINT),
        (5, AdminState.MAINT),
        (0x20, AdminState.MAINT),
        (8, AdminState.DRAIN),
        (12, AdminState.DRAIN),
        (0x10, AdminState.DRAIN),
        (9, AdminState.MAINT),
    ],
)
def test_admin_from_bits(bits: int, admin: AdminState) -> None:
    assert admin_from_bits(bits) is admin


def test_parse_stat_keeps_servers_only() -> None:
    rows = parse_stat(SHOW_STAT)
    assert [(r.backend_id, r.slot, r.status) for r in rows] == [
        ("be_web", "s1", "UP"),
        ("be_web", "s2", "DOWN"),
        ("be_web", "s3", "MAINT"),
    ]
    s1, s2, s3 = rows
    assert (s1.sessions, s1.last_change, s1.check_status, s1.check_desc, s1.address) == (
        3,
        12,
        "L7OK",
        "Layer7 check passed",
        "127.0.0.1:19001",
    )
    assert (s2.check_status, s2.address) == ("L4CON", "[::1]:19003")  # "*": check in progress
    assert s3.check_status == ""


def test_parse_stat_of_nothing() -> None:
    assert parse_stat("") == []


@pytest.mark.parametrize(
    ("status", "state"),
    [
        ("UP", OpState.UP),
        ("UP 1/2", OpState.UP),
        ("no check", OpState.UP),
        ("DOWN", OpState.DOWN),
        ("DOWN 1/2", OpState.DOWN),
        ("DRAIN", OpState.DRAIN),
        ("NOLB", OpState.DRAIN),
        ("MAINT", OpState.MAINT),
        ("MAINT (via be/s1)", OpState.MAINT),
    ],
)
def test_op_state(status: str, state: OpState) -> None:
    assert op_state(status) is state


@pytest.mark.parametrize(
    ("command", "answer", "ok"),
    [
        ("set server b/s1 state ready", "\n", True),
        ("set server b/s9 state ready", "No such server.\n", False),
        ("set map /m s1 web-0", "\n", True),
        ("set map /m s7 web-0", "entry not found.\n", False),
        (
            "set server b/s1 addr 127.0.0.2 port 1",
            "IP changed from '127.0.0.1' to '127.0.0.2', no need to change the port "
            "by 'stats socket command'\n",
            True,
        ),
        (
            "set server b/s1 addr 127.0.0.1 port 2",
            "no need to change the addr, port changed from '1' to '2' by 'stats socket command'\n",
            True,
        ),
        (
            "set server b/s1 addr bogus port 1",
            "Invalid addr 'bogus' by 'stats socket command'\n",
            False,
        ),
    ],
)
def test_command_succeeded(command: str, answer: str, ok: bool) -> None:
    assert command_succeeded(command, answer) is ok


def test_socket_path_length_is_checked() -> None:
    check_socket_path(Path("/srv/ingress/haproxy.sock"))
    with pytest.raises(ValueError, match="use a shorter portway home"):
        check_socket_path(Path("/" + "x" * MAX_SOCKET_PATH))
