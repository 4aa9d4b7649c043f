// Maintenance windows: the hours of the week in which an UpdatePlan may start work on another node.
// A window is days of the week plus a start and end wall-clock time in a time zone (IANA name, default
// UTC); an end at or before the start runs past midnight into the next day. Pure functions of a time.

export const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"] as const;
export type Day = (typeof DAYS)[number];

export interface MaintenanceWindow {
  /** Days the window opens on (its start's day); every day when absent. */
  days?: Day[];
  /** "HH:MM", 24-hour. */
  start: string;
  end: string;
  timeZone?: string;
}

export const CLOCK_PATTERN = "^([01][0-9]|2[0-3]):[0-5][0-9]$";

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      weekday: "short",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/** True when the IANA time zone name is one this runtime knows. */
export function validTimeZone(timeZone: string): boolean {
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

function clockMinutes(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return h! * 60 + m!;
}

/** Day of the week (0 = Monday) and minute of the day at `at`, on the wall clock of `timeZone`. */
function wallClock(at: Date, timeZone: string): { day: number; minute: number } {
  let day = 0;
  let hour = 0;
  let minute = 0;
  for (const p of formatter(timeZone).formatToParts(at)) {
    if (p.type === "weekday") day = DAYS.indexOf(p.value as Day);
    else if (p.type === "hour") hour = Number(p.value);
    else if (p.type === "minute") minute = Number(p.value);
  }
  return { day, minute: hour * 60 + minute };
}

/** Whether the window is open at a wall-clock day of the week (0 = Monday) and minute of the day. */
function openAtClock(w: MaintenanceWindow, day: number, minute: number): boolean {
  const days = new Set((w.days?.length ? w.days : DAYS).map((d) => DAYS.indexOf(d)));
  const start = clockMinutes(w.start);
  const end = clockMinutes(w.end);
  if (start < end) return days.has(day) && minute >= start && minute < end;
  // Past midnight: the evening part belongs to today, the morning part to yesterday's window.
  return (days.has(day) && minute >= start) || (days.has((day + 6) % 7) && minute < end);
}

export function inWindow(w: MaintenanceWindow, at: Date): boolean {
  const { day, minute } = wallClock(at, w.timeZone ?? "UTC");
  return openAtClock(w, day, minute);
}

/** Whether work may start at `at`: no windows means always. */
export function windowOpen(windows: readonly MaintenanceWindow[] | undefined, at: Date): boolean {
  return !windows?.length || windows.some((w) => inWindow(w, at));
}

/**
 * The next minute at or after `at` when a window is open (within eight days), for the plan's status.
 * Time zones change their offset only at quarter hours of UTC, so the wall clock is read once per
 * quarter hour and counted on from there.
 */
export function nextWindowOpen(windows: readonly MaintenanceWindow[], at: Date): Date | undefined {
  const QUARTER = 15 * 60_000;
  const first = Math.ceil(at.getTime() / 60_000) * 60_000;
  for (let block = Math.floor(first / QUARTER) * QUARTER; block < first + 8 * 86_400_000; block += QUARTER) {
    const clocks = windows.map((w) => wallClock(new Date(block), w.timeZone ?? "UTC"));
    for (let i = 0; i < 15; i++) {
      const t = block + i * 60_000;
      if (t < first) continue;
      const open = windows.some((w, k) => {
        const { day, minute } = clocks[k]!;
        const m = minute + i;
        return openAtClock(w, m >= 1440 ? (day + 1) % 7 : day, m % 1440);
      });
      if (open) return new Date(t);
    }
  }
  return undefined;
}
