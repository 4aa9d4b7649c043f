// Offline systemd analysis on a synthetic root whose answer is known, including the cases that trip
// naive readers: aliases, masks, templates, drop-ins, Wants= lines and .wants directories.

import assert from "node:assert/strict";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { pullsOf, UnitTree } from "../../src/system/units.ts";
import { tempDir } from "../helpers.ts";

function root(): string {
  const r = tempDir();
  const file = (p: string, text = "") => {
    mkdirSync(dirname(join(r, p)), { recursive: true });
    writeFileSync(join(r, p), text);
  };
  const link = (p: string, target: string) => {
    mkdirSync(dirname(join(r, p)), { recursive: true });
    symlinkSync(target, join(r, p));
  };
  const lib = "usr/lib/systemd/system";
  file(`${lib}/multi-user.target`, "[Unit]\nRequires=basic.target\n");
  file(`${lib}/basic.target`, "[Unit]\nWants=sysinit.target\n");
  file(`${lib}/sysinit.target`);
  file(`${lib}/graphical.target`, "[Unit]\nRequires=multi-user.target\nWants=display-manager.service\n");
  link(`${lib}/default.target`, "graphical.target");
  file(`${lib}/journald.service`);
  link(`${lib}/sysinit.target.wants/journald.service`, "../journald.service");
  file(
    `${lib}/ssh.service`,
    "[Unit]\nWants=keygen.service \\\n  extra.service\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
  );
  file(`${lib}/keygen.service`);
  file(`${lib}/extra.service`);
  link(`etc/systemd/system/multi-user.target.wants/ssh.service`, `/${lib}/ssh.service`);
  link(`etc/systemd/system/sshd.service`, `/${lib}/ssh.service`);
  file(`${lib}/getty@.service`, "[Unit]\nWants=helper-%i.service\n");
  file(`${lib}/helper-tty1.service`);
  link(`etc/systemd/system/multi-user.target.wants/getty@tty1.service`, `/${lib}/getty@.service`);
  file(`${lib}/masked.service`);
  link(`etc/systemd/system/masked.service`, "/dev/null");
  link(`etc/systemd/system/multi-user.target.wants/masked.service`, `/${lib}/masked.service`);
  file(`${lib}/docker.service`, "[Unit]\nWants=old.service\n");
  file(`${lib}/old.service`);
  file(`${lib}/new.service`);
  // A drop-in resets Wants= and adds another; only new.service is pulled in.
  file("etc/systemd/system/docker.service.d/10-berth.conf", "[Unit]\nWants=\nWants=new.service\n");
  link(`etc/systemd/system/multi-user.target.wants/docker.service`, `/${lib}/docker.service`);
  file(`${lib}/unused.service`);
  file(`${lib}/socket-only.socket`);
  return r;
}

describe("offline systemd analysis", () => {
  test("the default target's closure follows wants dirs, Wants= lines, drop-ins, templates; skips masks", () => {
    const t = new UnitTree(root());
    assert.equal(t.defaultTarget(), "graphical.target");
    assert.deepEqual(t.enabledServices(), [
      "docker.service",
      "extra.service",
      "getty@tty1.service",
      "helper-tty1.service",
      "journald.service",
      "keygen.service",
      "new.service",
      "ssh.service",
    ]);
  });

  test("service unit files: real files only, templates included, aliases and masks not", () => {
    const t = new UnitTree(root());
    assert.deepEqual(t.serviceUnitFiles(), [
      "docker.service",
      "extra.service",
      "getty@.service",
      "helper-tty1.service",
      "journald.service",
      "keygen.service",
      "masked.service",
      "new.service",
      "old.service",
      "ssh.service",
      "unused.service",
    ]);
    assert.equal(t.unit("sshd.service")?.path, "usr/lib/systemd/system/ssh.service");
    assert.equal(t.unit("masked.service")?.masked, true);
  });

  test("Wants= parsing: sections, continuations, comments, resets", () => {
    assert.deepEqual(
      pullsOf(
        "[Unit]\n# Wants=no.service\nWants=a.service b.service\nRequires=c.service\n[Service]\nWants=d.service\n",
      ),
      ["a.service", "b.service", "c.service"],
    );
    assert.deepEqual(pullsOf("[Unit]\nWants=a.service\nWants=\nWants=b.service\n"), ["b.service"]);
  });
});
