// The image's software bill of materials in two formats: CycloneDX 1.6 JSON (through
// @cyclonedx/cyclonedx-library, as `berth scan` writes it) and SPDX 2.3 JSON (hand-written: no
// maintained npm library writes SPDX 2.x; the document is a flat list of packages and relationships).
// Both are deterministic: their times are the archive state's, their ids derived from their content.

import * as CDX from "@cyclonedx/cyclonedx-library";
import { sha256Hex } from "../common/hash.ts";
import { BERTH_VERSION } from "../common/version.ts";
import { purlOf } from "../scan/formats.ts";
import type { OsRelease } from "../scan/inventory.ts";
import { combine } from "./licenses.ts";

export interface SbomPackage {
  name: string;
  version: string;
  architecture: string;
  source: string;
  sourceVersion: string;
  licenses: string[];
  maintainer?: string;
  debSha256?: string;
  debUrl?: string;
  /** Names of image packages this one depends on (the closure's edges). */
  dependsOn: string[];
}

export interface SbomFile {
  path: string;
  /** SPDX 2.3 requires a SHA-1 for every file. */
  sha1: string;
  sha256: string;
}

export interface SbomInput {
  name: string;
  version: string;
  /** ISO time of the archive state. */
  created: string;
  os?: OsRelease;
  packages: SbomPackage[];
  /** Files added from the repository or a build step (not from a package). */
  files: SbomFile[];
}

/** A UUID made from a digest (the layout of a version 5 UUID), so the same SBOM gets the same serial. */
function uuidOf(text: string): string {
  const h = sha256Hex(text);
  const v = `5${h.slice(13, 16)}`;
  const variant = ((Number.parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16) + h.slice(17, 20);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${v}-${variant}-${h.slice(20, 32)}`;
}

export function toCycloneDxImage(s: SbomInput): string {
  const bom = new CDX.Models.Bom();
  bom.serialNumber = `urn:uuid:${uuidOf(JSON.stringify(["cdx", s]))}`;
  bom.metadata.timestamp = new Date(s.created);
  const root = new CDX.Models.Component(CDX.Enums.ComponentType.Container, `berth/${s.name}`, {
    version: s.version,
    bomRef: `image:${s.name}`,
  });
  bom.metadata.component = root;
  bom.metadata.tools.components.add(
    new CDX.Models.Component(CDX.Enums.ComponentType.Application, "berth", { version: BERTH_VERSION }),
  );
  const refs = new Map<string, CDX.Models.Component>();
  for (const p of s.packages) {
    const purl = purlOf(p.name, p.version, p.architecture, s.os);
    const c = new CDX.Models.Component(CDX.Enums.ComponentType.Library, p.name, {
      version: p.version,
      bomRef: purl,
      purl,
    });
    const expr = combine(p.licenses);
    if (expr) c.licenses.add(new CDX.Models.LicenseExpression(expr));
    if (p.debSha256) c.hashes.set(CDX.Enums.HashAlgorithm["SHA-256"], p.debSha256);
    if (p.source !== p.name || p.sourceVersion !== p.version)
      c.properties.add(new CDX.Models.Property("berth:source", `${p.source} ${p.sourceVersion}`));
    if (p.maintainer) c.publisher = p.maintainer;
    refs.set(p.name, c);
    bom.components.add(c);
    root.dependencies.add(c.bomRef);
  }
  for (const p of s.packages)
    for (const d of p.dependsOn) {
      const dep = refs.get(d);
      if (dep) refs.get(p.name)!.dependencies.add(dep.bomRef);
    }
  for (const f of s.files) {
    const c = new CDX.Models.Component(CDX.Enums.ComponentType.File, f.path, { bomRef: `file:${f.path}` });
    c.hashes.set(CDX.Enums.HashAlgorithm["SHA-256"], f.sha256);
    bom.components.add(c);
  }
  const serializer = new CDX.Serialize.JsonSerializer(
    new CDX.Serialize.JSON.Normalize.Factory(CDX.Spec.Spec1dot6),
  );
  return serializer.serialize(bom, { sortLists: true, space: 2 });
}

const spdxRef = (kind: string, name: string) => `SPDXRef-${kind}-${name.replace(/[^A-Za-z0-9.-]/g, "-")}`;

export function toSpdxImage(s: SbomInput): string {
  const created = `${s.created.slice(0, 19)}Z`;
  const imageRef = spdxRef("Image", s.name);
  const packages: unknown[] = [
    {
      SPDXID: imageRef,
      name: `berth/${s.name}`,
      versionInfo: s.version,
      primaryPackagePurpose: "CONTAINER",
      downloadLocation: "NOASSERTION",
      filesAnalyzed: false,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: "NOASSERTION",
      copyrightText: "NOASSERTION",
      supplier: "Organization: Berth",
    },
  ];
  const relationships: unknown[] = [
    { spdxElementId: "SPDXRef-DOCUMENT", relationshipType: "DESCRIBES", relatedSpdxElement: imageRef },
  ];
  for (const p of s.packages) {
    const id = spdxRef("Package", p.name);
    const expr = combine(p.licenses);
    packages.push({
      SPDXID: id,
      name: p.name,
      versionInfo: p.version,
      supplier: p.maintainer ? `Person: ${p.maintainer}` : "Organization: Debian",
      downloadLocation: p.debUrl ?? "NOASSERTION",
      filesAnalyzed: false,
      ...(p.debSha256 ? { checksums: [{ algorithm: "SHA256", checksumValue: p.debSha256 }] } : {}),
      sourceInfo: `built from the Debian source package ${p.source} ${p.sourceVersion}`,
      licenseConcluded: "NOASSERTION",
      licenseDeclared: expr ?? "NOASSERTION",
      copyrightText: "NOASSERTION",
      externalRefs: [
        {
          referenceCategory: "PACKAGE-MANAGER",
          referenceType: "purl",
          referenceLocator: purlOf(p.name, p.version, p.architecture, s.os),
        },
      ],
    });
    relationships.push({ spdxElementId: imageRef, relationshipType: "CONTAINS", relatedSpdxElement: id });
    for (const d of p.dependsOn)
      if (s.packages.some((q) => q.name === d))
        relationships.push({
          spdxElementId: id,
          relationshipType: "DEPENDS_ON",
          relatedSpdxElement: spdxRef("Package", d),
        });
  }
  const files = s.files.map((f, i) => ({
    SPDXID: `SPDXRef-File-${i}`,
    fileName: `.${f.path}`,
    checksums: [
      { algorithm: "SHA1", checksumValue: f.sha1 },
      { algorithm: "SHA256", checksumValue: f.sha256 },
    ],
    licenseConcluded: "NOASSERTION",
    copyrightText: "NOASSERTION",
  }));
  files.forEach((f) => {
    relationships.push({
      spdxElementId: imageRef,
      relationshipType: "CONTAINS",
      relatedSpdxElement: f.SPDXID,
    });
  });
  const doc = {
    spdxVersion: "SPDX-2.3",
    dataLicense: "CC0-1.0",
    SPDXID: "SPDXRef-DOCUMENT",
    name: `berth/${s.name} ${s.version}`,
    documentNamespace: `https://berth.invalid/spdx/${s.name}/${uuidOf(JSON.stringify(["spdx", s]))}`,
    creationInfo: { created, creators: [`Tool: berth-${BERTH_VERSION}`] },
    packages,
    ...(files.length ? { files } : {}),
    relationships,
  };
  return `${JSON.stringify(doc, null, 2)}\n`;
}
