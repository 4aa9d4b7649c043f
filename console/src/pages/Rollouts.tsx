// Rollouts: waves, progress and failures of each, pause, resume and stop; a new rollout; the fleet's
// global stop switch.

import { type FormEvent, useCallback, useEffect, useState } from "react";
import { call, type FleetSettings, get, post, type Rollout } from "../api.ts";

const UNIT: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "10 50@+1h 100@+1d": each wave's share of the fleet, and when it starts (now when not given). */
export function parseWaves(text: string, now = Date.now()): { percent: number; startAt?: string }[] {
  return text
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((w) => {
      const m = /^(\d+(?:\.\d+)?)%?(?:@\+(\d+)([mhd]))?$/.exec(w);
      if (!m || Number(m[1]) > 100) throw new Error(`"${w}" is not a wave: write 10 50@+1h 100@+1d`);
      return {
        percent: Number(m[1]),
        ...(m[2] ? { startAt: new Date(now + Number(m[2]) * UNIT[m[3]!]!).toISOString() } : {}),
      };
    });
}

const KINDS = ["update-apply", "patch-apply", "patch-rollback", "harden-apply", "harden-rollback", "rescan"];

export function Rollouts(props: { admin: boolean }) {
  const [list, setList] = useState<Rollout[]>([]);
  const [settings, setSettings] = useState<FleetSettings | undefined>();
  const [note, setNote] = useState("");
  const load = useCallback(() => {
    get<{ rollouts: Rollout[] }>("/api/v1/rollouts").then(
      (r) => setList(r.rollouts),
      (e: Error) => setNote(e.message),
    );
    get<FleetSettings>("/api/v1/settings").then(setSettings, () => {});
  }, []);
  useEffect(() => {
    load();
    const t = setInterval(load, 5000);
    return () => clearInterval(t);
  }, [load]);
  const act = async (id: string, action: "pause" | "resume" | "stop") => {
    try {
      await post(`/api/v1/rollouts/${id}/${action}`);
      setNote(`rollout ${action === "stop" ? "stopped" : `${action}d`}`);
    } catch (e) {
      setNote((e as Error).message);
    }
    load();
  };
  const create = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const text = (k: string) => String(f.get(k) ?? "").trim();
    const form = e.currentTarget;
    let waves: { percent: number; startAt?: string }[];
    try {
      waves = parseWaves(text("waves"));
    } catch (err) {
      setNote((err as Error).message);
      return;
    }
    const params: Record<string, string> = {};
    if (text("version")) params.version = text("version");
    if (text("name2")) params.name = text("name2");
    const selector: Record<string, string> = {};
    if (text("cve")) selector.cve = text("cve");
    try {
      await post("/api/v1/rollouts", {
        name: text("name"),
        kind: text("kind"),
        params,
        waves,
        maxConcurrent: Number(text("maxConcurrent")),
        failureThreshold: Number(text("failureThreshold")) / 100,
        selector,
      });
      setNote(`rollout ${text("name")} started`);
      form.reset();
    } catch (err) {
      setNote((err as Error).message);
    }
    load();
  };
  const toggleStop = async () => {
    try {
      setSettings(await call<FleetSettings>("PUT", "/api/v1/settings", { stopped: !settings?.stopped }));
    } catch (e) {
      setNote((e as Error).message);
    }
  };
  return (
    <section>
      <h1 tabIndex={-1}>Rollouts</h1>
      <p aria-live="polite" className="note">
        {note}
      </p>
      <p>
        Global stop switch: <strong>{settings?.stopped ? "on, no rollout sends work" : "off"}</strong>{" "}
        {props.admin && (
          <button type="button" onClick={toggleStop}>
            {settings?.stopped ? "Let rollouts run" : "Stop every rollout"}
          </button>
        )}
      </p>
      <table>
        <thead>
          <tr>
            <th scope="col">Rollout</th>
            <th scope="col">Work</th>
            <th scope="col">State</th>
            <th scope="col">Waves</th>
            <th scope="col">Progress</th>
            <th scope="col">Failed</th>
            {props.admin && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {list.map((r) => (
            <tr key={r.id}>
              <td>{r.name}</td>
              <td>
                {r.kind} {r.params.version ?? r.params.name ?? ""}
              </td>
              <td>
                {r.state}
                {r.reason ? `: ${r.reason}` : ""}
              </td>
              <td>{r.waves.map((w) => `${w.percent}%${w.startAt ? ` at ${w.startAt}` : ""}`).join(", ")}</td>
              <td>
                <meter
                  min={0}
                  max={Math.max(1, r.progress.targets)}
                  value={r.progress.succeeded}
                  aria-label={`${r.name} progress`}
                />{" "}
                {r.progress.succeeded}/{r.progress.targets} done, {r.progress.running + r.progress.queued} at
                work, {r.progress.reached} reached
              </td>
              <td>{r.progress.failed}</td>
              {props.admin && (
                <td>
                  {r.state === "running" && (
                    <button type="button" onClick={() => act(r.id, "pause")}>
                      Pause {r.name}
                    </button>
                  )}
                  {r.state === "paused" && (
                    <button type="button" onClick={() => act(r.id, "resume")}>
                      Resume {r.name}
                    </button>
                  )}
                  {(r.state === "running" || r.state === "paused") && (
                    <button type="button" onClick={() => act(r.id, "stop")}>
                      Stop {r.name}
                    </button>
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {props.admin && (
        <>
          <h2>New rollout</h2>
          <form className="filters" onSubmit={create} aria-label="New rollout">
            <label>
              Name <input name="name" required />
            </label>
            <label>
              Work
              <select name="kind" defaultValue="update-apply">
                {KINDS.map((k) => (
                  <option key={k}>{k}</option>
                ))}
              </select>
            </label>
            <label>
              Release <input name="version" placeholder="2026.12.1" />
            </label>
            <label>
              Patch or profile <input name="name2" />
            </label>
            <label>
              Waves (% of the fleet, @+delay) <input name="waves" defaultValue="10 50@+1h 100@+1d" required />
            </label>
            <label>
              At once <input name="maxConcurrent" type="number" min={1} defaultValue={2} required />
            </label>
            <label>
              Pause at failure %{" "}
              <input name="failureThreshold" type="number" min={0} max={100} defaultValue={20} required />
            </label>
            <label>
              Only hosts vulnerable to <input name="cve" />
            </label>
            <button type="submit">Start rollout</button>
          </form>
        </>
      )}
    </section>
  );
}
