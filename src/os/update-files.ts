// What berth-base carries for A/B updates (docs/update.md): the repository's address and trust anchor,
// the health check that runs before boot-complete.target, the early boot step that records releases the
// loader fell back from and runs /etc migrations, the ESP mount, and the watchdog and boot timeouts that
// turn a hang into a reboot (so the loader's try counter runs down). Boot-time steps are small shell
// scripts: they run before the Berth CLI could start under an emulator and need nothing but coreutils.
// Pure: same inputs, same files.

import type { BaseFile } from "./base-package.ts";
import { ESP_LABEL } from "./boot-entry.ts";
import type { Profile } from "./profile.ts";

/** The release a build stamps into berth-base. */
export interface ReleaseStamp {
  version: string;
  sourceDateEpoch: number;
  /** The trusted root.json bytes (profile update.root), if any. */
  trustedRoot?: Buffer;
}

/** Where the node keeps its update state (also read by src/update). */
export const UPDATE_STATE_DIR = "/var/lib/berth/update";
/** The release facts a node reads about itself. */
export const RELEASE_JSON = "/usr/lib/berth/update.json";

export interface ReleaseFacts {
  version: string;
  profile: string;
  sourceDateEpoch: number;
  tries: number;
  images: string[];
  migrations: string[];
  minimumFrom?: string;
  bootOptions: string[];
}

/** Units whose failure fails the health check: the profile's services, the runtime, Berth's own. */
export function requiredUnits(p: Profile): string[] {
  // With Docker, docker.service is the runtime: it starts a containerd of its own when the packaged
  // containerd.service does not come up, and the containers still run.
  const runtime = p.runtime === "docker" ? ["docker.service"] : ["containerd.service"];
  return [
    ...new Set([
      ...p.services.enable,
      ...runtime,
      "berth-preload-images.service",
      "berth-check.service",
      "berth-update-boot.service",
      ...p.update.health.units,
    ]),
  ];
}

/** Mounts the ESP on /efi, found by partition name in sysfs (udev's links can come late on a slow VM). */
const MOUNT_ESP = `mount_esp() {
  mountpoint -q /efi && return 0
  for u in /sys/class/block/*/uevent; do
    if grep -qx "PARTNAME=${ESP_LABEL}" "$u"; then
      mount -t vfat -o umask=0077,noatime,nodev,nosuid,noexec "/dev/$(sed -n 's/^DEVNAME=//p' "$u")" /efi
      return
    fi
  done
  return 1
}`;

const HEALTH_SCRIPT = `#!/bin/sh
# Berth: the health check of this boot, after the default target and before boot-complete.target.
# On a boot the loader is counting (a new release on trial), a pass lets systemd-bless-boot mark the
# entry good; a failure marks it bad, records the release as bad and reboots into the other slot.
set -u
PATH=/usr/sbin:/usr/bin
state=${UPDATE_STATE_DIR}
mkdir -p "$state" /run/berth
. /usr/lib/berth/release
release=$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^berth\\.release=//p')
[ -n "$release" ] || release=$BERTH_RELEASE
reasons=
bad() {
  echo "berth-health: FAILED: $*"
  reasons="\${reasons:+$reasons; }$*"
}

systemctl is-active --quiet default.target || bad "the default target is not active"
while read -r unit; do
  [ -z "$unit" ] || ! systemctl is-failed --quiet "$unit" || bad "unit $unit failed"
done < /usr/lib/berth/health.units
case "$BERTH_RUNTIME" in
  docker) timeout 60 docker version --format '{{.Server.Version}}' > /dev/null 2>&1 || bad "the Docker engine does not answer" ;;
  *) timeout 60 ctr version > /dev/null 2>&1 || bad "containerd does not answer" ;;
esac
[ -e /run/berth/check.ok ] || bad "the self-test container did not run"
[ "$(date +%s)" -ge "$BERTH_SOURCE_DATE_EPOCH" ] || bad "the clock says $(date -u +%FT%TZ), before this release was built"
[ ! -e /run/berth/migrations.failed ] || bad "migrations failed: $(tr '\\n' ' ' < /run/berth/migrations.failed)"
for check in /usr/lib/berth/health.d/*; do
  [ -x "$check" ] || continue
  out=$(timeout 300 "$check" 2>&1) || bad "check $(basename "$check") failed: $(echo "$out" | tail -n 1)"
done

${MOUNT_ESP}
mount_esp || bad "the ESP (partition ${ESP_LABEL}) cannot be mounted on /efi"

counted=no
[ ! -e /sys/firmware/efi/efivars/LoaderBootCountPath-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f ] || counted=yes
result=good
[ -z "$reasons" ] || result=bad
tmp=$(mktemp "$state/.health.XXXXXX")
{
  echo "RELEASE=$release"
  echo "RESULT=$result"
  echo "TIME=$(date -u +%FT%TZ)"
  echo "ASSESSED=$counted"
  echo "REASONS=$(echo "$reasons" | tr '\\n' ' ')"
} > "$tmp"
mv "$tmp" "$state/health"
# The result of the update attempt that brought this release (berth update apply wrote VERSION=).
if [ "$counted" = yes ] && grep -qx "VERSION=$release" "$state/attempt" 2> /dev/null \
  && ! grep -q '^RESULT=' "$state/attempt"; then
  { echo "RESULT=$result"; echo "RESOLVED=$(date -u +%FT%TZ)"; echo "BOOTED=$release"; } >> "$state/attempt"
fi
if [ "$result" = good ]; then
  echo "berth-health: release $release is healthy"
  exit 0
fi
if [ "$counted" = yes ]; then
  grep -qx "$release" "$state/bad" 2> /dev/null || echo "$release" >> "$state/bad"
  sync
  /usr/lib/systemd/systemd-bless-boot bad || true
  echo "berth-health: release $release failed its health check; rebooting into the other slot"
  systemctl --no-block reboot
fi
exit 1
`;

const UPDATE_BOOT_SCRIPT = `#!/bin/sh
# Berth: early in every boot, before the services that read /etc. Records a release the loader fell
# back from (it never came up, or failed its health check), then runs the /etc migrations: those of
# releases no longer booted are undone (newest first, with the down scripts saved when they were
# applied), those of this release that are new run forward. It reads only the state partition: the ESP
# is mounted later, off the boot's critical chain, by berth-health (before systemd-bless-boot needs it)
# and by berth update itself; mounting it here cost the whole boot a vfat module load under TCG.
set -u
PATH=/usr/sbin:/usr/bin
state=${UPDATE_STATE_DIR}
mkdir -p "$state/migrations" /run/berth
. /usr/lib/berth/release
release=$(tr ' ' '\\n' < /proc/cmdline | sed -n 's/^berth\\.release=//p')
[ -n "$release" ] || release=$BERTH_RELEASE

if [ -e "$state/attempt" ] && ! grep -q '^RESULT=' "$state/attempt"; then
  attempted=$(sed -n 's/^VERSION=//p' "$state/attempt")
  if [ -n "$attempted" ] && [ "$attempted" != "$release" ]; then
    grep -qx "$attempted" "$state/bad" 2> /dev/null || echo "$attempted" >> "$state/bad"
    { echo "RESULT=bad"; echo "RESOLVED=$(date -u +%FT%TZ)"; echo "BOOTED=$release"; } >> "$state/attempt"
    echo "berth-update: release $attempted did not come up; back on $release, $attempted marked bad"
  fi
fi

mine=/usr/lib/berth/migrations
applied=$state/migrations.applied
touch "$applied"
tac "$applied" | while read -r id; do
  [ -n "$id" ] || continue
  ! grep -qx "$id" "$mine/order" 2> /dev/null || continue
  if sh -eu "$state/migrations/$id/down"; then
    sed -i "/^$id\\$/d" "$applied"
    rm -rf "$state/migrations/$id"
    echo "berth-update: migration $id undone"
  else
    echo "$id (down)" >> /run/berth/migrations.failed
  fi
done
[ -e "$mine/order" ] || exit 0
while read -r id; do
  [ -n "$id" ] || continue
  ! grep -qx "$id" "$applied" || continue
  if sh -eu "$mine/$id/up"; then
    mkdir -p "$state/migrations/$id"
    cp "$mine/$id/down" "$state/migrations/$id/down"
    echo "$id" >> "$applied"
    echo "berth-update: migration $id applied"
  else
    echo "$id (up)" >> /run/berth/migrations.failed
  fi
done < "$mine/order"
sync
exit 0
`;

function shellCheck(command: string): string {
  return `#!/bin/sh\n# A health check from the profile (update.health.commands).\nset -e\n${command}\n`;
}

/** The files berth-base adds for updates. */
export function updateFiles(p: Profile, r: ReleaseStamp): BaseFile[] {
  const facts: ReleaseFacts = {
    version: r.version,
    profile: p.name,
    sourceDateEpoch: r.sourceDateEpoch,
    tries: p.update.tries,
    images: p.update.images,
    migrations: p.update.migrations.map((m) => m.id),
    ...(p.update.minimumFrom ? { minimumFrom: p.update.minimumFrom } : {}),
    bootOptions: p.kernel.cmdline,
  };
  const files: BaseFile[] = [
    { path: RELEASE_JSON.slice(1), mode: 0o644, content: `${JSON.stringify(facts, null, 2)}\n` },
    { path: "usr/lib/berth/health-check", mode: 0o755, content: HEALTH_SCRIPT },
    { path: "usr/lib/berth/update-boot", mode: 0o755, content: UPDATE_BOOT_SCRIPT },
    { path: "usr/lib/berth/health.units", mode: 0o644, content: `${requiredUnits(p).join("\n")}\n` },
    {
      path: "usr/lib/systemd/system/berth-health.service",
      mode: 0o644,
      content: `[Unit]
Description=Berth: health check of this boot (before boot-complete.target)
# No default dependencies: multi-user.target wants this unit and it runs after that target.
DefaultDependencies=no
After=sysinit.target basic.target multi-user.target berth-check.service docker.service containerd.service
Before=boot-complete.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/berth/health-check
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
RequiredBy=boot-complete.target
`,
    },
    {
      path: "usr/lib/systemd/system/berth-update-boot.service",
      mode: 0o644,
      content: `[Unit]
Description=Berth: record a fallen-back release, run /etc migrations
DefaultDependencies=no
After=local-fs.target
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/berth/update-boot
StandardOutput=journal+console

[Install]
WantedBy=sysinit.target
`,
    },
    {
      // A hung machine resets when it has a watchdog (systemd feeds it while PID 1 runs).
      path: "usr/lib/systemd/system.conf.d/50-berth-watchdog.conf",
      mode: 0o644,
      content: "[Manager]\nRuntimeWatchdogSec=2min\nRebootWatchdogSec=5min\n",
    },
    {
      // A trial boot that hangs before it is assessed reboots, and the loader's counter runs down.
      path: "usr/lib/systemd/system/boot-complete.target.d/50-berth.conf",
      mode: 0o644,
      content: "[Unit]\nJobRunningTimeoutSec=20min\nJobTimeoutAction=reboot-force\n",
    },
  ];
  if (p.update.repository)
    files.push({ path: "usr/lib/berth/repository/url", mode: 0o644, content: `${p.update.repository}\n` });
  if (r.trustedRoot)
    files.push({ path: "usr/lib/berth/repository/root.json", mode: 0o644, content: r.trustedRoot });
  for (const [i, c] of p.update.health.commands.entries())
    files.push({
      path: `usr/lib/berth/health.d/50-profile-${String(i + 1).padStart(2, "0")}`,
      mode: 0o755,
      content: shellCheck(c),
    });
  if (p.update.migrations.length) {
    files.push({
      path: "usr/lib/berth/migrations/order",
      mode: 0o644,
      content: `${p.update.migrations.map((m) => m.id).join("\n")}\n`,
    });
    for (const m of p.update.migrations)
      files.push(
        { path: `usr/lib/berth/migrations/${m.id}/up`, mode: 0o755, content: `#!/bin/sh\n${m.up}\n` },
        { path: `usr/lib/berth/migrations/${m.id}/down`, mode: 0o755, content: `#!/bin/sh\n${m.down}\n` },
      );
  }
  return files;
}

/** Units updateFiles ships that the image enables. */
export const UPDATE_UNITS = ["berth-health.service", "berth-update-boot.service"];
