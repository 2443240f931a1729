"""normbench.engine.signals, the one owner of signal handlers: SIGTERM as Ctrl-C in a real
subprocess with a real signal, handlers put back on exit, nothing changed outside the main
thread."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading

from normbench.engine.signals import StopRequest, handled, signal_name, sigterm_as_interrupt

CHILD = textwrap.dedent(
    """
    import signal, sys, time
    from normbench.engine.signals import sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            print("ready", flush=True)
            time.sleep(60)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", flush=True)
    print("after:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
    """
)


def test_sigterm_as_interrupt_raises_keyboard_interrupt_in_a_real_process():
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines() == ["KeyboardInterrupt", "after: True"], out + err


def test_handlers_are_put_back_and_left_alone_outside_the_main_thread():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopRequest() as stop:
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == stop._handle
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    seen = []

    def elsewhere() -> None:
        with handled([signal.SIGTERM], signal.SIG_IGN):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join()
    assert seen == [before[0]]
    assert signal_name(signal.SIGTERM) == "SIGTERM"
