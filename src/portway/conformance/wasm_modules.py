"""WASI test modules in WebAssembly text, for the wasm tier's conformance cases,
tests and benchmark (the counterpart of the busybox test image).

Each module is a WASI preview 1 command (``_start``) built from one prelude of
helpers: ``$write`` (fd, ptr, len), ``$print`` (fd, NUL-terminated string),
``$print_num`` (fd, unsigned number) and ``$sleep_ms``. Memory layout: bytes
0-1023 are scratch for the helpers, 1024+ hold the data segments, 8192+ the
argv/environ tables and strings.
"""

from __future__ import annotations

_PRELUDE = """
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get"
    (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get"
    (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1000) "\\n")
  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $strlen (param $p i32) (result i32) (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))
  (func $print (param $fd i32) (param $p i32)
    (call $write (local.get $fd) (local.get $p) (call $strlen (local.get $p))))
  (func $newline (param $fd i32) (call $write (local.get $fd) (i32.const 1000) (i32.const 1)))
  ;; digits are written backwards from 63 down into 32..63
  (func $print_num (param $fd i32) (param $n i32) (local $at i32)
    (local.set $at (i32.const 64))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (i32.ne (local.get $n) (i32.const 0))))
    (call $write (local.get $fd) (local.get $at) (i32.sub (i32.const 64) (local.get $at))))
  ;; one relative monotonic-clock subscription at 128, its event at 192, count at 240
  (func $sleep_ms (param $ms i32)
    (i64.store (i32.const 128) (i64.const 0))
    (i32.store8 (i32.const 136) (i32.const 0))
    (i32.store (i32.const 144) (i32.const 1))
    (i64.store (i32.const 152)
      (i64.mul (i64.extend_i32_u (local.get $ms)) (i64.const 1000000)))
    (i64.store (i32.const 160) (i64.const 0))
    (i32.store16 (i32.const 168) (i32.const 0))
    (drop (call $poll_oneoff (i32.const 128) (i32.const 192) (i32.const 1) (i32.const 240))))
"""


def _module(body: str) -> str:
    return f"(module{_PRELUDE}{body})\n"


#: prints "hello from wasm", then "arg: X" for each argv entry (argv[0] too)
#: and "env: K=V" for each environment variable, on stdout; exits 0
HELLO = _module(
    """
  (data (i32.const 1024) "hello from wasm\\n\\00")
  (data (i32.const 1056) "arg: \\00")
  (data (i32.const 1072) "env: \\00")
  (func $list (param $count i32) (param $table i32) (param $prefix i32) (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (call $print (i32.const 1) (local.get $prefix))
        (call $print (i32.const 1)
          (i32.load (i32.add (local.get $table) (i32.mul (local.get $i) (i32.const 4)))))
        (call $newline (i32.const 1))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))
  (func (export "_start")
    (call $print (i32.const 1) (i32.const 1024))
    (drop (call $args_sizes_get (i32.const 256) (i32.const 260)))
    (drop (call $args_get (i32.const 8192) (i32.const 16384)))
    (call $list (i32.load (i32.const 256)) (i32.const 8192) (i32.const 1056))
    (drop (call $environ_sizes_get (i32.const 264) (i32.const 268)))
    (drop (call $environ_get (i32.const 12288) (i32.const 65536)))
    (call $list (i32.load (i32.const 264)) (i32.const 12288) (i32.const 1072)))
"""
)

#: prints "crashing" (stdout) and "exit code 3" (stderr), then exits 3
EXIT_3 = _module(
    """
  (data (i32.const 1024) "crashing\\n\\00")
  (data (i32.const 1040) "exit code 3\\n\\00")
  (func (export "_start")
    (call $print (i32.const 1) (i32.const 1024))
    (call $print (i32.const 2) (i32.const 1040))
    (call $proc_exit (i32.const 3)))
"""
)

#: prints "spinning", then loops forever without a host call
SPIN = _module(
    """
  (data (i32.const 1024) "spinning\\n\\00")
  (func (export "_start")
    (call $print (i32.const 1) (i32.const 1024))
    (loop $forever (br $forever)))
"""
)

#: prints "growing", then grows its memory a page at a time; when a grow fails
#: it traps, as an allocator that cannot get memory aborts
GROW = _module(
    """
  (data (i32.const 1024) "growing\\n\\00")
  (func (export "_start")
    (call $print (i32.const 1) (i32.const 1024))
    (loop $more
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
      (br $more)))
"""
)

#: creates out.txt in its first preopened directory (fd 3) with the line
#: "written by wasm"; prints "wrote out.txt" and exits 0, or prints
#: "open failed: errno N" on stderr and exits 1
WRITE_FILE = _module(
    """
  (data (i32.const 1024) "out.txt")
  (data (i32.const 1040) "written by wasm\\n\\00")
  (data (i32.const 1072) "wrote out.txt\\n\\00")
  (data (i32.const 1088) "open failed: errno \\00")
  (func (export "_start") (local $errno i32) (local $fd i32)
    ;; oflags CREAT|TRUNC, rights FD_WRITE
    (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 7)
      (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 248)))
    (if (i32.ne (local.get $errno) (i32.const 0))
      (then
        (call $print (i32.const 2) (i32.const 1088))
        (call $print_num (i32.const 2) (local.get $errno))
        (call $newline (i32.const 2))
        (call $proc_exit (i32.const 1))))
    (local.set $fd (i32.load (i32.const 248)))
    (call $print (local.get $fd) (i32.const 1040))
    (drop (call $fd_close (local.get $fd)))
    (call $print (i32.const 1) (i32.const 1072)))
"""
)

#: prints the first line of out.txt in its first preopened directory (fd 3) as
#: "read: LINE" and exits 0, or prints "open failed: errno N" on stderr, exits 1
READ_FILE = _module(
    """
  (data (i32.const 1024) "out.txt")
  (data (i32.const 1040) "read: \\00")
  (data (i32.const 1088) "open failed: errno \\00")
  (func (export "_start") (local $errno i32) (local $fd i32) (local $n i32)
    ;; rights FD_READ
    (local.set $errno (call $path_open (i32.const 3) (i32.const 0) (i32.const 1024) (i32.const 7)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 248)))
    (if (i32.ne (local.get $errno) (i32.const 0))
      (then
        (call $print (i32.const 2) (i32.const 1088))
        (call $print_num (i32.const 2) (local.get $errno))
        (call $newline (i32.const 2))
        (call $proc_exit (i32.const 1))))
    (local.set $fd (i32.load (i32.const 248)))
    ;; one read of up to 4096 bytes into 20480
    (i32.store (i32.const 256) (i32.const 20480))
    (i32.store (i32.const 260) (i32.const 4096))
    (drop (call $fd_read (local.get $fd) (i32.const 256) (i32.const 1) (i32.const 264)))
    (call $print (i32.const 1) (i32.const 1040))
    (call $write (i32.const 1) (i32.const 20480) (i32.load (i32.const 264))))
"""
)

#: prints "tick 1", "tick 2", ... every 100 ms, forever (sleeping in a host call)
TICK = _module(
    """
  (data (i32.const 1024) "tick \\00")
  (func (export "_start") (local $n i32)
    (loop $forever
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (call $print (i32.const 1) (i32.const 1024))
      (call $print_num (i32.const 1) (local.get $n))
      (call $newline (i32.const 1))
      (call $sleep_ms (i32.const 100))
      (br $forever)))
"""
)

#: name -> WAT, as the conformance cases import them
MODULES = {
    "hello": HELLO,
    "exit3": EXIT_3,
    "spin": SPIN,
    "grow": GROW,
    "write-file": WRITE_FILE,
    "read-file": READ_FILE,
    "tick": TICK,
}
