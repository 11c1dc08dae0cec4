#!/usr/bin/env python3
"""keyline-ui under Xvfb on a demo line of swtpm DUTs (ctest label "ui").

Starts its own Xvfb, runs `keyline-ui --demo --devices 2` (CA ceremony in
SoftHSM, 2 trusted swtpm DUTs + 1 forged one, a station daemon), types the
demo serials into the UI's own serial field with synthetic key events
(xdotool: text + Enter, as a barcode scanner does), waits for the cards, and
asserts on what the widgets show (KEYLINE_UI_TEST_STATE: the app writes its
labels' texts as JSON): two cards PASS, the forged DUT's card FAIL with its
reason, the shift counters, the devices view's rows. Then, keyboard only,
the CA view (Alt+I verifies the audit chain, Alt+P publishes the CRL: its
number rises) and the service view (DEMO-0002 on slot-02 decommissioned
through the confirmation; its signed sanitization record shown).
Screenshots of the four views are rendered by GTK itself (SIGUSR1) into
--out.
Everything it starts is stopped, also when an assertion fails.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def wait_for(what, pred, timeout, proc=None):
    end = time.time() + timeout
    last = None
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError("keyline-ui exited (%s) while waiting for %s"
                                 % (proc.returncode, what))
        try:
            last = pred()
            if last:
                return last
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.25)
    raise AssertionError("timed out waiting for %s" % what)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ui", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="kl-ui-test.")
    state = os.path.join(work, "state.json")
    procs = []

    def load():
        with open(state) as f:
            return json.load(f)

    try:
        # Our own X server on a display nobody uses (not :0, which a desktop
        # or another test may hold), checked to answer before use.
        display = None
        for n in range(90 + os.getpid() % 50, 300):
            if os.path.exists("/tmp/.X%d-lock" % n) or \
                    os.path.exists("/tmp/.X11-unix/X%d" % n):
                continue
            xvfb = subprocess.Popen(["Xvfb", ":%d" % n, "-screen", "0", "1400x900x24",
                                     "-nolisten", "tcp"], stderr=subprocess.DEVNULL)
            procs.append(xvfb)
            try:
                wait_for("Xvfb :%d" % n, lambda: xvfb.poll() is None and subprocess.run(
                    ["xdotool", "getdisplaygeometry"], env=dict(os.environ, DISPLAY=":%d" % n),
                    capture_output=True).returncode == 0, 15)
                display = ":%d" % n
                break
            except AssertionError:
                xvfb.kill()
                xvfb.wait()
        assert display, "no X display could be started"
        env = dict(os.environ, DISPLAY=display, GDK_BACKEND="x11",
                   GSK_RENDERER="cairo", NO_AT_BRIDGE="1",
                   KEYLINE_UI_TEST_STATE=state,
                   # GTK and fontconfig keep one-time allocations to exit:
                   # not ours to chase in a sanitizer build.
                   ASAN_OPTIONS="detect_leaks=0")
        log = open(os.path.join(work, "ui.log"), "w")
        ui = subprocess.Popen([args.ui, "--demo", "--devices", "2",
                               "--home", os.path.join(work, "home")],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(ui)

        # The demo line comes up: a CA, 3 DUTs, the station, 3 cards.
        d = wait_for("the demo line and the cards",
                     lambda: (lambda s: s if s["connection"].endswith("CONNECTED")
                              and len(s["line"]["cards"]) == 3 else None)(load()), 300, ui)
        assert d["views"] == ["line", "devices", "ca", "service"], d["views"]
        assert d["line"]["serial_focused"], "the serial field has the focus at start"
        assert all(c["state"].endswith("READY") for c in d["line"]["cards"]), d["line"]

        xenv = dict(os.environ, DISPLAY=display)
        win = wait_for("the window", lambda: subprocess.run(
            ["xdotool", "search", "--name", "^Keyline$"], env=xenv,
            capture_output=True, text=True).stdout.split(), 30)[0]
        subprocess.run(["xdotool", "mousemove", "--window", win, "700", "450"], env=xenv)
        subprocess.run(["xdotool", "windowfocus", win], env=xenv,
                       stderr=subprocess.DEVNULL)
        serials = ["DEMO-0001", "DEMO-0002", "DEMO-0003"]
        for i, s in enumerate(serials):
            subprocess.run(["xdotool", "type", "--delay", "30", s], env=xenv, check=True)
            subprocess.run(["xdotool", "key", "Return"], env=xenv, check=True)
            # The job went to the next free slot, and the field is empty for
            # the next scan.
            wait_for("%s on a card" % s, lambda: any(
                c["serial"] == s for c in load()["line"]["cards"]), 30)
            assert load()["line"]["serial_entry"] == ""

        def finished():
            s = load()
            states = [c["state"] for c in s["line"]["cards"]]
            return s if all(x.endswith(("PASS", "FAIL")) for x in states) else None

        d = wait_for("every card finished", finished, 120, ui)
        cards = {c["serial"]: c for c in d["line"]["cards"]}
        for s in serials[:2]:
            assert cards[s]["state"] == "✔ PASS", cards[s]
            assert cards[s]["progress"] == 1.0, cards[s]
        bad = cards["DEMO-0003"]
        assert bad["name"] == "slot-03", bad
        assert bad["state"] == "✖ FAIL", bad
        assert bad["reason"] == "ek_cert_untrusted", bad
        assert bad["message"].startswith("EK certificate not issued by a trusted"), bad
        assert bad["message"].endswith("(at step ek_cert)"), bad
        # Readable without scrolling: every card's text inside its border,
        # and every card inside the visible part of the list.
        for c in d["line"]["cards"]:
            assert c["fits"] and c["in_view"], c
        assert d["line"]["passed"] == "✔ Passed 2", d["line"]
        assert d["line"]["failed"] == "✖ Failed 1", d["line"]
        assert d["banner"] == "", d["banner"]

        def shot(view):
            png = "%s-%s.png" % (state, view)
            if os.path.exists(png):
                os.unlink(png)
            ui.send_signal(signal.SIGUSR1)
            wait_for("the %s screenshot" % view, lambda: os.path.getsize(png) > 10000, 30)
            shutil.copy(png, os.path.join(args.out, "ui-%s.png" % view))

        shot("line")
        # Keyboard only: Ctrl+2 is the devices view.
        subprocess.run(["xdotool", "key", "ctrl+2"], env=xenv, check=True)

        def devices():
            s = load()
            rows = s["devices"]["rows"]
            return s if s["view"] == "devices" and len(rows) == 3 else None

        d = wait_for("the devices view with 3 rows", devices, 60)
        rows = {r["serial"]: r["state"] for r in d["devices"]["rows"]}
        assert rows == {"DEMO-0001": "provisioned", "DEMO-0002": "provisioned",
                        "DEMO-0003": "preregistered"}, rows
        assert d["devices"]["total_label"] == "3 devices", d["devices"]
        time.sleep(0.5)
        shot("devices")

        def key(*keys):
            for k in keys:
                subprocess.run(["xdotool", "key", k], env=xenv, check=True)
                time.sleep(0.15)

        def typed(text):
            subprocess.run(["xdotool", "type", "--delay", "30", text], env=xenv, check=True)

        # The CA view (Ctrl+3), keyboard only. Its audit verdict is from
        # when the UI connected; the three jobs have added entries since, so
        # Alt+I (Verify the chain) must report more.
        key("ctrl+3")

        def ca_verified():
            s = load()
            m = re.search(r"CRL number (\d+)", s["ca"]["status"])
            v = re.match(r"✔ Audit chain intact: (\d+) entries verified", s["ca"]["verify"])
            return (s, int(m.group(1)), int(v.group(1))) if s["view"] == "ca" and m and v \
                else None

        d, crl0, entries0 = wait_for("the CA view with its status and audit verdict",
                                     ca_verified, 60, ui)
        assert d["ca"]["publish_visible"] and d["ca"]["audit_visible"], d["ca"]
        key("alt+i")
        d, _, entries1 = wait_for("Alt+I: the chain verified again, with the jobs' entries",
                                  lambda: (lambda r: r if r and r[2] > entries0 else None)(
                                      ca_verified()), 60, ui)
        # Alt+P: Publish the CRL. Its number rises, the status says so, and
        # the chain (now with the publication's entry) is verified again.
        key("alt+p")
        d, crl1, entries2 = wait_for("Alt+P: CRL %d published" % (crl0 + 1), lambda: (
            lambda r: r if r and r[1] == crl0 + 1 and r[0]["ca"]["action_result"].startswith(
                "✔ CRL %d published" % (crl0 + 1)) else None)(ca_verified()), 60, ui)
        assert entries2 >= entries1, (entries1, entries2)
        time.sleep(0.5)
        shot("ca")

        # The service view (Ctrl+4): decommission DEMO-0002, provisioned on
        # slot-02. Alt+S the slot (Space opens the list, Down, Enter), Alt+R
        # the serial, Alt+M Decommission…, the confirmation, Alt+E Erase.
        key("ctrl+4")
        wait_for("the service view", lambda: load()["view"] == "service", 30, ui)
        d = load()
        assert d["service"]["decommission_visible"], d["service"]
        assert d["service"]["slot"] == "slot-01", d["service"]
        key("alt+s", "space")
        time.sleep(0.5)
        key("Down", "Return")
        wait_for("slot-02 chosen", lambda: load()["service"]["slot"] == "slot-02", 30, ui)
        key("alt+r")
        typed("DEMO-0002")
        wait_for("the serial typed", lambda: load()["service"]["serial"] == "DEMO-0002", 30)
        key("alt+m")
        d = wait_for("the confirmation", lambda: (lambda s: s if s["service"]["confirm"]
                                                  else None)(load()), 30, ui)
        q = d["service"]["question"]
        assert q.startswith("Decommission DEMO-0002 on slot-02?"), q
        assert "Its EK is deny-listed for good." in q, q
        assert d["service"]["progress"] == "", d["service"]
        key("alt+e")

        def recorded():
            s = load()
            return s if s["service"]["record_summary"].startswith("✔ Sanitization record") \
                else None

        d = wait_for("the decommission's signed sanitization record", recorded, 120, ui)
        svc = d["service"]
        assert not svc["confirm"], svc
        assert svc["serial_focused"], "the focus went back to the serial after Erase"
        assert svc["progress"].startswith("✔ DEMO-0002 decommissioned"), svc["progress"]
        env_ = json.loads(svc["record"])
        rec = env_["record"]
        assert rec["device"]["serial"] == "DEMO-0002", rec["device"]
        assert rec["record_id"] >= 1, rec
        assert rec["verification"]["result"] == "pass", rec["verification"]
        assert rec["disposition"].startswith("decommissioned"), rec["disposition"]
        assert env_["signature"] and "BEGIN CERTIFICATE" in env_["signer"], env_.keys()
        assert svc["record_summary"].startswith(
            "✔ Sanitization record %d of DEMO-0002" % rec["record_id"]), svc["record_summary"]
        time.sleep(0.5)
        shot("service")
        print("test_ui_line: 2 PASS and 1 FAIL from the UI's serial field; CRL %d -> %d and "
              "the audit chain verified from the CA view; DEMO-0002 decommissioned with "
              "record %d from the service view; screenshots in %s"
              % (crl0, crl1, rec["record_id"], args.out))
        return 0
    except AssertionError as e:
        print("test_ui_line: FAILED:", e, file=sys.stderr)
        for name in ("ui.log", "home/demo-line.log", "home/station.log"):
            p = os.path.join(work, name)
            if os.path.exists(p):
                print("---- %s (tail)" % name, file=sys.stderr)
                with open(p) as f:
                    print("".join(f.readlines()[-30:]), file=sys.stderr)
        if os.path.exists(state):
            print("---- state.json", file=sys.stderr)
            with open(state) as f:
                print(f.read()[-4000:], file=sys.stderr)
        return 1
    finally:
        # keyline-ui stops its demo line (station, DUTs) on SIGTERM.
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
