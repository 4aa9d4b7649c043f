// Live library patching, as other parts use it: the journals (what is patched where) and the
// operations. The work is in live.ts (one process), host.ts (every process, from a file or a .deb),
// recipe.ts (what an update changes and how to apply it) and the modules they use.

export {
  applyLibraries,
  type HostSummary,
  type LibraryFile,
  librariesFromDeb,
  libraryFile,
  planLibraries,
} from "./host.ts";
export {
  type PatchLayer,
  type ProcessJournal,
  patchStateDir,
  patchStatus,
  readProcessJournal,
} from "./journal.ts";
export { applyPatch, type PatchResult, type ProcessPlan, planProcess, rollbackPatch } from "./live.ts";
