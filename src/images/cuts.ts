// What a definition's `cut:` switches remove, as globs over the image's paths. Copyright files stay
// (the licences of what is shipped travel with it); the dpkg inventory is written after the cuts.

import type { CutRules } from "./definition.ts";

const RULES: Record<Exclude<keyof CutRules, "paths" | "keep">, { globs: string[]; keep?: string[] }> = {
  docs: {
    globs: ["usr/share/doc/**", "usr/share/doc-base/**", "usr/share/gtk-doc/**"],
    keep: ["usr/share/doc/*/copyright"],
  },
  manpages: { globs: ["usr/share/man/**", "usr/share/info/**"] },
  locales: { globs: ["usr/share/locale/**", "usr/share/i18n/**"], keep: ["usr/share/locale/locale.alias"] },
  headers: { globs: ["usr/include/**", "usr/lib/*/pkgconfig/**", "usr/share/pkgconfig/**"] },
  staticLibs: { globs: ["usr/lib/**/*.a", "usr/lib/**/*.la"] },
  packageManager: {
    globs: [
      "var/lib/dpkg/**",
      "etc/dpkg/**",
      "var/lib/apt/**",
      "var/cache/apt/**",
      "etc/apt/**",
      "var/cache/debconf/**",
      "usr/share/lintian/**",
      "usr/share/bug/**",
      "usr/share/menu/**",
      "usr/share/debianutils/**",
    ],
  },
  init: {
    globs: [
      "etc/init.d/**",
      "etc/rc?.d/**",
      "etc/default/**",
      "etc/logrotate.d/**",
      "etc/cron.*/**",
      "usr/lib/systemd/**",
      "lib/systemd/**",
      "etc/systemd/**",
      "usr/lib/tmpfiles.d/**",
      "usr/lib/sysusers.d/**",
      "etc/ufw/**",
      "etc/apparmor.d/**",
      "usr/share/apport/**",
      "usr/share/vim/**",
      "usr/share/bash-completion/**",
      "usr/share/zsh/**",
    ],
  },
};

/** The cut rules in force for a definition, and the keep globs (the definition's and the rules'). */
export function cutRulesOf(c: CutRules): { rules: { name: string; globs: string[] }[]; keep: string[] } {
  const rules: { name: string; globs: string[] }[] = [];
  const keep = [...c.keep];
  for (const [name, r] of Object.entries(RULES)) {
    if (!c[name as keyof typeof RULES]) continue;
    rules.push({ name, globs: r.globs });
    keep.push(...(r.keep ?? []));
  }
  if (c.paths.length) rules.push({ name: "paths", globs: c.paths });
  return { rules, keep };
}
