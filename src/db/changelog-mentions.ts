// What a changelog sentence says about a CVE it names. Uploads name CVEs they do not fix: "not
// affected", "revert the fix for", "document", "the previous upload fixed", "regression caused by the
// fix for", "drop CVE-...patch, included upstream". Only a mention that is none of these is a fix.
// Hand-written: no maintained library reads Debian changelog prose. The patterns are deliberately
// local to the CVE they judge (a sentence, or the words right before the id), because changelog
// items mix fixes and references, and whole-item keywords ("incorrect", "revert", "document") also
// occur in real fixes ("Incorrect security UI in Omnibox", 'Revert "commit" (CVE-...)').

export type MentionKind = "fix" | "not-affected" | "revert" | "reference";

const CVE_ID = /CVE-\d{4}-\d{4,7}/g;
/** Stands for the id judged in a sentence; a list of other ids right before it is folded into it. */
const MARK = "\u0001";

/** Whole-sentence statements that none of the ids named in it is fixed by this upload. */
const NOT_AFFECTED = [
  /\b(?:not|never|isn't|aren't|wasn't|weren't|is not|are not|was not|were not)\s+(?:been\s+|be\s+|really\s+|actually\s+)?(?:affected|vulnerable|exploitable)\b/i,
  /\bunaffected\b/i,
  /\b(?:does|do|did)\s+not\s+affect|\b(?:doesn't|don't|didn't)\s+affect/i,
  /\bnot\s+(?:applicable|relevant)\s+(?:to|for)\b/i,
];

const REFERENCE_SENTENCE = [
  // "was already fixed in 2.4.23-2", "already included upstream"
  /\balready\b[^.;]*\b(?:fixed|included|applied|addressed|resolved|patched|contained|part of)\b/i,
  /\b(?:fixed|included|applied|addressed|resolved)\b[^.;]*\balready\b/i,
  // "fixed by the previous upload", "in the last upload"
  /\b(?:previous|last|earlier|prior)\s+(?:upload|version|release|revision|update|security update|dsa)\b/i,
  // corrections of the changelog itself ("Fixed changelog regarding CVE number")
  /\b(?:in|to|from|of)\s+(?:the\s+|d\/|debian\/)?(?:previous\s+)?changelog\b|\bchangelog\s+(?:entry|entries|regarding|for)\b|\b(?:fix|fixed|correct|corrected|update|updated)\s+(?:the\s+)?(?:d\/|debian\/)?changelog\b/i,
];

/** Patterns around the id judged (MARK). Each runs only when its trigger word is in the sentence. */
const LOCAL: [MentionKind, RegExp, RegExp][] = (
  [
    // revert the fix for CVE-X / revert CVE-X.patch / the fix for CVE-X was reverted
    [
      "revert",
      /revert/,
      String.raw`\brevert\w*\s+(?:\S+\s+){0,4}?(?:fix|patch|change|commit|update)\w*\s+(?:for|of|to\s+address|addressing)\s+{CVE}`,
    ],
    ["revert", /revert/, String.raw`\brevert\w*\s+(?:the\s+)?(?:\S+\s+)?{CVE}`],
    [
      "revert",
      /reverted/,
      String.raw`{CVE}[^.;]{0,60}\b(?:was|were|is|are|has been|have been|got)\s+reverted\b`,
    ],
    // regression caused by / introduced by / broken by the fix for CVE-X; CVE-X regression
    [
      "reference",
      /regression|broken|caused|introduced/,
      String.raw`\b(?:regression\w*|broken|caused|introduced)\s+(?:\S+\s+){0,5}?(?:by|from|in|with)\s+(?:the\s+|a\s+)?(?:\S+\s+){0,2}?(?:fix|patch|change|update|backport)\w*\s+(?:for|of|to)\s+{CVE}`,
    ],
    [
      "reference",
      /regression/,
      String.raw`\bregression\w*[\s_-]+(?:of|from|in|for|with)[\s_-]+(?:the\s+)?{CVE}`,
    ],
    ["reference", /regression/, String.raw`{CVE}[\w.+]*[\s_-]+(?:fix[\s_-]+|patch[\s_-]+)?regression`],
    [
      "reference",
      /improv|complet|extend|follow|amend|adjust|correct|rework|updat|refresh|rebas/,
      String.raw`\b(?:improve|complete|extend|follow-up to|followup to|amend|adjust|correct|rework|update|refresh|rebase)\w*\s+(?:the\s+)?(?:previous\s+|original\s+|upstream\s+)?(?:fix|patch|backport)\w*\s+(?:for|of)\s+{CVE}`,
    ],
    [
      "reference",
      /incomplete|insufficient|partial/,
      String.raw`\b(?:incomplete|insufficient|partial)\s+(?:fix|patch|mitigation)\w*\s+(?:for|of|to)?\s*{CVE}`,
    ],
    [
      "reference",
      /incomplete|insufficient|partial/,
      String.raw`(?:fix|patch)\w*\s+(?:for|of)\s+{CVE}\s+(?:was|is)\s+(?:incomplete|insufficient|partial)`,
    ],
    // drop CVE-X.patch (upstream now) / remove patches for CVE-X / 02-CVE-X.patch: dropped
    [
      "reference",
      /drop|remov|delet/,
      String.raw`\b(?:drop|remov|delet)\w*\s+(?:\S+\s+){0,6}?(?:patch|dpatch|diff)\w*\s+(?:for|of)\s+{CVE}`,
    ],
    [
      "reference",
      /drop|remov|delet/,
      String.raw`\b(?:drop|remov|delet)\w*\s+(?:the\s+)?(?:\S+\s+)?[\w/-]*{CVE}[\w.+-]*(?:\.d?patch|\.diff|\s+patch)`,
    ],
    [
      "reference",
      /dropped|removed|deleted|obsolete/,
      String.raw`{CVE}[\w.+-]*(?:\.d?patch|\.diff)?\s*(?:,|:)?\s*(?:was\s+|is\s+|now\s+)?(?:dropped|removed|deleted|obsolete)\b`,
    ],
    // document / mention / note about CVE-X
    [
      "reference",
      /document|mention|note|typo|misspel/,
      String.raw`\b(?:document|mention|note|typo|misspel)\w*\s+(?:\S+\s+){0,4}?{CVE}`,
    ],
    // see / cf. / similar to / related to / variant of CVE-X
    [
      "reference",
      /see|cf|similar|related|variant|same|duplicate/,
      String.raw`\b(?:see(?:\s+also)?|cf\.?|similar\s+to|related\s+to|variant\s+of|same\s+as|duplicate\s+of)\s+{CVE}`,
    ],
  ] as [MentionKind, RegExp, string][]
).map(([kind, trigger, p]) => [
  kind,
  new RegExp(trigger.source, "i"),
  new RegExp(p.replaceAll("{CVE}", MARK), "i"),
]);

/** The sentence with `cve` replaced by MARK, and a run of other ids listed right before it folded in. */
function focus(sentence: string, cve: string): string {
  return sentence
    .replace(/\s+/g, " ")
    .replaceAll(cve, MARK)
    .replace(new RegExp(`(?:CVE-\\d{4}-\\d{4,7}[\\w.+-]*,? (?:and |or |& )?)+(?=${MARK})`, "g"), "");
}

/**
 * What `sentence` says about `cve`. `heading` is the text of the item that introduces a list the
 * sentence is part of ("Not affected by the following:", "Revert the fixes for:"), or "".
 */
export function mentionKind(sentence: string, cve: string, heading = ""): MentionKind {
  let text: string | undefined;
  for (const [kind, trigger, re] of LOCAL) {
    if (!trigger.test(sentence)) continue;
    text ??= focus(sentence, cve);
    if (re.test(text)) return kind;
  }
  for (const re of NOT_AFFECTED) if (re.test(sentence) || re.test(heading)) return "not-affected";
  for (const re of REFERENCE_SENTENCE) if (re.test(sentence) || re.test(heading)) return "reference";
  if (/\brevert\w*\s+(?:the\s+)?(?:following\s+)?(?:fix|patch|change)\w*\b/i.test(heading)) return "revert";
  return "fix";
}

/** The CVE ids in a text, in order of appearance, without repeats. */
export function cveIds(text: string): string[] {
  return [...new Set(text.match(CVE_ID) ?? [])];
}

/**
 * Splits an entry body into items (a "*", "-" or "+" bullet with its continuation lines), each with
 * the heading it belongs to: the nearest less-indented item whose text ends with a colon.
 */
export function bodyItems(body: string[]): { text: string; heading: string }[] {
  const items: { text: string; indent: number; heading: string }[] = [];
  const stack: { indent: number; text: string }[] = [];
  let cur: { text: string; indent: number; heading: string } | undefined;
  for (const line of body) {
    const bullet = /^(\s*)([*+-]|\d+[.)])\s+(.*)$/.exec(line);
    if (bullet) {
      const indent = bullet[1]!.length;
      while (stack.length && stack[stack.length - 1]!.indent >= indent) stack.pop();
      const parent = stack[stack.length - 1];
      cur = { text: bullet[3]!, indent, heading: parent && /:\s*$/.test(parent.text) ? parent.text : "" };
      items.push(cur);
      stack.push(cur);
    } else if (/^\s*\[ .* \]\s*$/.test(line) || !line.trim()) {
      // "[ Maintainer Name ]" group headers and blank lines end nothing but carry no text.
      if (!line.trim()) continue;
      stack.length = 0;
      cur = undefined;
    } else if (cur) cur.text += ` ${line.trim()}`;
    else {
      cur = { text: line.trim(), indent: /^\s*/.exec(line)![0].length, heading: "" };
      items.push(cur);
    }
  }
  return items.map(({ text, heading }) => ({ text, heading }));
}

/** Sentences of an item: split after ".", ";", "!" or "?" when a capital, "(" or a CVE id follows. */
export function sentences(text: string): string[] {
  return text.split(/(?<=[.;!?])\s+(?=[A-Z(]|CVE-)/);
}
