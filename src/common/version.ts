// Berth's own version: stamped into built images, SARIF and SBOM tool entries, and user agents.
export const BERTH_VERSION = "0.1.0";
