#!/usr/bin/python3
"""The manager console in a real headless Chromium (Debian chromium + chromedriver, driven by
python3-selenium) against a running dev stack: log in, create a template, create and launch a
campaign, watch its progress reach 100 % with a pause and resume on the way, open the
statistics, re-drive a dead letter, and check that a read-only token sees no write buttons.
Every page is checked for console errors at 1280x800 and on a 390-px phone screen.
Screenshots go to the artifacts directory.

    console_test.py --herald build/herald --artifacts build/test-artifacts/console
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

FAILURES = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        FAILURES.append(what)


def load_env(state_dir):
    env = {}
    with open(os.path.join(state_dir, "dev.env")) as f:
        for line in f:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value.strip("'")
    return env


def api(env, method, path, body=None, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(env["HERALD_ADMIN_URL"] + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as res:
        return json.loads(res.read() or b"null")


class Console:
    def __init__(self, url, artifacts):
        opts = Options()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,800"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        self.url = url
        self.artifacts = artifacts
        self.wait = WebDriverWait(self.driver, 30)

    def quit(self):
        self.driver.quit()

    def el(self, test, parent=None):
        return self.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, f'[data-test="{test}"]')))

    def all(self, test):
        return self.driver.find_elements(By.CSS_SELECTOR, f'[data-test="{test}"]')

    def visible(self, test):
        return [e for e in self.all(test) if e.is_displayed()]

    def click(self, test):
        self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, f'[data-test="{test}"]'))).click()

    def type(self, test, text):
        e = self.el(test)
        e.clear()
        e.send_keys(text)

    def until(self, what, predicate, timeout=60):
        try:
            # Rows are re-rendered when their data changes: a handle may go stale between polls.
            WebDriverWait(self.driver, timeout, poll_frequency=0.2,
                          ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
                lambda d: predicate())
            return True
        except Exception:
            check(False, what + " (timed out)")
            self.shot("timeout-" + what.replace(" ", "-")[:40])
            return False

    def stable(self, fn):
        """fn() again while the elements it reads are replaced under it by a re-render."""
        for _ in range(20):
            try:
                return fn()
            except StaleElementReferenceException:
                continue
        return fn()

    def shot(self, name):
        path = os.path.join(self.artifacts, name + ".png")
        self.driver.save_screenshot(path)
        return path

    def console_errors(self, expected_statuses=()):
        """Console errors and warnings, except Chrome's network entries for the HTTP statuses
        a step provoked on purpose (a 400 for an invalid form)."""
        out = []
        for e in self.driver.get_log("browser"):
            if e["level"] not in ("SEVERE", "WARNING"):
                continue
            if e.get("source") == "network" and any(f" {s} " in e["message"] for s in expected_statuses):
                continue
            out.append(e)
        return out

    def confirm(self):
        self.click("confirm-ok")

    def login(self, token):
        self.driver.get(self.url + "/console/")
        self.type("login-token", token)
        self.click("login-submit")
        self.el("nav-campaigns")

    def logout_storage(self):
        self.driver.execute_script("sessionStorage.clear()")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--herald", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--users", default="3000")
    args = ap.parse_args()
    os.makedirs(args.artifacts, exist_ok=True)
    state = tempfile.mkdtemp(prefix="herald-console-")
    up = subprocess.run([args.herald, "dev", "up", "--detach", "--state-dir", state, "--broker-port", "0",
                         "--users", args.users], capture_output=True, text=True)
    if up.returncode != 0:
        print(up.stdout, up.stderr)
        return 1
    console = None
    try:
        env = load_env(state)
        tokens = dict(part.split(":", 1) for part in env["HERALD_ADMIN_TOKEN"].split(","))
        console = Console(env["HERALD_ADMIN_URL"], args.artifacts)
        c = console
        c.login(tokens["write"])
        c.shot("01-campaigns-empty")

        # A new template (a British English push), with its live preview.
        c.driver.get(c.url + "/console/#/templates/promo.new_releases/push/en-GB")
        c.type("tf-subject", "New this week")
        c.type("tf-text", "{{first_name}}, {{release_count}} new: {{#releases}}{{title}} {{/releases}}")
        c.until("the preview renders the draft",
                lambda: "new:" in c.el("tf-preview").text and not c.visible("tf-preview-error"))
        c.type("tf-text", "{{first_name}}, try {{coupon}}")
        c.until("the preview names an unknown variable",
                lambda: any("coupon" in e.text for e in c.visible("tf-preview-error")))
        c.shot("02-template-preview-error")
        c.type("tf-text", "{{first_name}}, {{release_count}} new releases are waiting")
        c.until("the preview clears once the text is valid",
                lambda: "new releases are waiting" in c.el("tf-preview").text and not c.visible("tf-preview-error"))
        c.click("tf-save")
        c.until("the template is saved", lambda: "saved" in c.el("flash").text.lower())
        saved = api(env, "GET", "/v1/templates/promo.new_releases/push/en-GB", token=tokens["write"])
        check(saved["text"] == "{{first_name}}, {{release_count}} new releases are waiting" and saved["version"] == 1,
              "the new template is stored as version 1 with the text typed")
        check(len(c.all("tf-history")) > 0, "the version history is shown")
        c.shot("03-template-saved")

        # A campaign: validation next to the field, then a valid one.
        c.driver.get(c.url + "/console/#/campaigns/new")
        c.type("cf-name", "Console premieres")
        Select(c.el("cf-event-type")).select_by_value("promo.new_releases")
        c.click("cf-segment-mode-tags")
        c.type("cf-tags", "premium")
        c.type("cf-content", "movie-1, movie-2")
        c.type("cf-cron", "61 * * * *")
        c.click("cf-save")
        c.until("a bad cron is reported next to its field", lambda: "minute 61" in c.el("cf-error-cron").text)
        c.shot("04-campaign-form-error")
        c.type("cf-cron", "")
        Select(c.el("cf-priority")).select_by_value("high")
        c.type("cf-window-from", "00:00")
        c.type("cf-window-to", "00:00")
        c.click("cf-save")
        c.until("the campaign is created", lambda: "#/campaigns/" in c.driver.current_url and "new" not in c.driver.current_url)
        errors = c.console_errors(expected_statuses=(400,))
        check(not errors, "no console errors while creating a campaign: " + json.dumps(errors)[:500])
        campaigns = api(env, "GET", "/v1/campaigns", token=tokens["write"])["campaigns"]
        check(len(campaigns) == 1 and campaigns[0]["state"] == "draft", "one draft campaign exists")
        cid = campaigns[0]["id"]

        c.driver.get(c.url + "/console/#/campaigns")
        row = lambda: c.driver.find_element(By.CSS_SELECTOR, f'[data-test="campaign-row"][data-id="{cid}"]')
        c.until("the campaign row shows", lambda: row().get_attribute("data-state") == "draft")
        buttons = lambda: c.stable(lambda: {b.get_attribute("data-test") for b in row().find_elements(By.CSS_SELECTOR, "button")
                                            if b.is_displayed()})

        def press(button):
            c.until("pressing " + button, lambda: row().find_element(By.CSS_SELECTOR, f'[data-test="{button}"]').click() or True)

        check({"btn-launch", "btn-edit", "btn-delete"} <= buttons() and "btn-pause" not in buttons(),
              "a draft offers launch, edit, delete and no pause")
        press("btn-launch")
        c.until("the campaign runs", lambda: row().get_attribute("data-state") == "running", 30)
        check("btn-pause" in buttons() and "btn-launch" not in buttons(), "a running campaign offers pause, not launch")
        press("btn-pause")
        c.until("the campaign is paused", lambda: row().get_attribute("data-state") == "paused", 30)
        check("btn-resume" in buttons(), "a paused campaign offers resume")
        c.shot("05-campaign-paused")
        press("btn-resume")
        progress = lambda: row().find_element(By.CSS_SELECTOR, '[data-test="progress"]')
        c.until("progress reaches 100 % without reloading",
                lambda: progress().get_attribute("data-done-percent") == "100", 120)
        stats = api(env, "GET", f"/v1/campaigns/{cid}/stats", token=tokens["write"])
        check(stats["progress"]["pending"] == 0 and stats["progress"]["planned"] > 0, "the API agrees: nothing pending")
        check(c.stable(lambda: progress().get_attribute("data-sent")) == str(stats["progress"]["sent"]), "the bar shows the sent count")
        c.shot("06-campaign-done")

        # Statistics.
        c.click("nav-stats")
        c.el("stats-chart")
        c.until("the latency tiles show numbers", lambda: any(ch.isdigit() for ch in c.el("stats-latency").text))
        c.shot("07-statistics")

        # Dead letters: an invalid event is dead-lettered, then re-driven (and dead-lettered again).
        subprocess.run([args.herald, "publish", "--no-validate", "--topic", "events.auth.v1"],
                       input='{"event_type": "no.such.type", "created_dt": "2026-11-21T10:00:00Z", "payload": {"user": ["u-1"]}}\n',
                       text=True, env={**os.environ, **env}, check=True, capture_output=True)
        c.click("nav-dlq")

        def dead_letters(at_least):
            def listed():
                c.click("dlq-refresh")
                return len(c.all("dlq-row")) >= at_least
            return listed

        c.until("the dead letter is listed", dead_letters(1))
        before = len(c.all("dlq-row"))
        c.all("dlq-row")[0].click()
        c.click("dlq-redrive")
        c.confirm()
        c.until("the re-drive is confirmed", lambda: "events.auth.v1" in c.el("dlq-result").text)

        c.until("the re-driven event is dead-lettered again", dead_letters(before + 1))
        c.shot("08-dead-letters")
        errors = c.console_errors()
        check(not errors, "no console errors at 1280x800: " + json.dumps(errors)[:500])

        # A read-only token sees no write buttons.
        c.logout_storage()
        c.login(tokens["read"])
        c.driver.get(c.url + "/console/#/campaigns")
        c.until("the campaign row shows for the reader", lambda: len(c.all("campaign-row")) == 1)
        check(not c.visible("new-campaign") and not c.stable(lambda: any(b.is_displayed() for b in row().find_elements(By.CSS_SELECTOR, "button"))),
              "a read-only token sees no write buttons on campaigns")
        c.driver.get(c.url + "/console/#/templates/promo.new_releases/push/en")
        c.el("tf-preview")
        check(not c.visible("tf-save"), "a read-only token cannot save templates")
        c.click("nav-dlq")
        c.until("dead letters list for the reader", lambda: len(c.all("dlq-row")) >= 1)
        if c.all("dlq-row"):
            c.all("dlq-row")[0].click()
        check(not c.visible("dlq-redrive"), "a read-only token cannot re-drive")

        # A phone screen: every page without horizontal overflow or console errors.
        c.driver.set_window_size(390, 844)
        for name, route, ready in (("campaigns", "#/campaigns", "campaign-row"), ("templates", "#/templates", "template-row"),
                                   ("stats", "#/stats", "stats-chart"), ("dead-letters", "#/dead-letters", "dlq-row"),
                                   ("campaign", f"#/campaigns/{cid}", "campaign-progress")):
            c.driver.get(c.url + "/console/" + route)
            c.el(ready)  # the page's data has arrived
            overflow = c.driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
            check(overflow <= 1, f"no horizontal overflow on a phone: {name} ({overflow}px)")
            c.shot(f"09-phone-{name}")
        errors = c.console_errors()
        check(not errors, "no console errors on a phone: " + json.dumps(errors)[:500])
    finally:
        if console:
            console.quit()
        subprocess.run([args.herald, "dev", "down", "--state-dir", state], capture_output=True)
        shutil.rmtree(state, ignore_errors=True)
    print(f"{len(FAILURES)} failure(s); screenshots in {args.artifacts}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
