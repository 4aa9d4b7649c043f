// The UpdatePlan CustomResourceDefinition. Its validation schema is derived from the TypeBox schemas in
// plan.ts, turned into the "structural" OpenAPI subset the API server demands (no additionalProperties:
// false, enums instead of unions of constants, int-or-string marked as such). Hand-written: no
// maintained library converts JSON Schema to a structural CRD schema.

import { GROUP, PLAN_KIND, PLAN_PLURAL, VERSION } from "./names.ts";
import { UpdatePlanSpecSchema, UpdatePlanStatusSchema } from "./plan.ts";

type Json = Record<string, unknown>;

const KEEP = new Set([
  "type",
  "description",
  "pattern",
  "minimum",
  "maximum",
  "minLength",
  "maxLength",
  "minItems",
  "maxItems",
  "enum",
  "default",
  "format",
]);

/** A JSON Schema (as TypeBox writes it) in the structural form apiextensions.k8s.io/v1 accepts. */
export function structural(schema: Json): Json {
  const anyOf = schema.anyOf as Json[] | undefined;
  const description = schema.description as string | undefined;
  const withDescription = (o: Json): Json => (description ? { ...o, description } : o);
  if (anyOf) {
    if (anyOf.every((s) => "const" in s))
      return withDescription({ type: typeof anyOf[0]!.const, enum: anyOf.map((s) => s.const) });
    const types = new Set(anyOf.map((s) => s.type));
    // int-or-string: the API server wants no types in the branches; minimum applies only to the
    // number and pattern only to the string, so both can sit on the field itself.
    if (types.size === 2 && types.has("integer") && types.has("string")) {
      const out: Json = { "x-kubernetes-int-or-string": true };
      for (const branch of anyOf)
        for (const [k, v] of Object.entries(structural(branch))) if (k !== "type") out[k] = v;
      return withDescription(out);
    }
    throw new Error(`no structural form for anyOf over ${[...types].join(", ")}`);
  }
  const out: Json = {};
  for (const [k, v] of Object.entries(schema)) if (KEEP.has(k)) out[k] = v;
  if ("const" in schema) out.enum = [schema.const];
  if (schema.properties) {
    out.properties = Object.fromEntries(
      Object.entries(schema.properties as Record<string, Json>).map(([k, v]) => [k, structural(v)]),
    );
    if (Array.isArray(schema.required) && schema.required.length) out.required = schema.required;
  }
  if (schema.items) out.items = structural(schema.items as Json);
  const pattern = schema.patternProperties as Record<string, Json> | undefined;
  if (pattern) out.additionalProperties = structural(Object.values(pattern)[0]!);
  return out;
}

const column = (name: string, type: string, jsonPath: string, description: string, priority = 0) => ({
  name,
  type,
  jsonPath,
  description,
  ...(priority ? { priority } : {}),
});

export function updatePlanCrd(): Json {
  const spec = structural(UpdatePlanSpecSchema as unknown as Json);
  // The API server checks "exactly one target" itself, so a wrong plan is refused at kubectl apply.
  const target = (spec.properties as Record<string, Json>).target!;
  target.oneOf = [
    { required: ["osRelease"] },
    { required: ["livePatch"] },
    { required: ["hardeningProfile"] },
  ];
  return {
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${PLAN_PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      // Nodes are cluster-scoped, and so is a plan over them.
      scope: "Cluster",
      names: {
        plural: PLAN_PLURAL,
        singular: "updateplan",
        kind: PLAN_KIND,
        listKind: `${PLAN_KIND}List`,
        shortNames: ["uplan"],
        categories: ["berth"],
      },
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: [
            column("Target", "string", ".status.target", "what is rolled out"),
            column("Phase", "string", ".status.phase", "Pending, Progressing, Waiting, Paused or Completed"),
            column("Nodes", "integer", ".status.total", "nodes the selector matches"),
            column("Updated", "integer", ".status.succeeded", "nodes done"),
            column("Running", "integer", ".status.inProgress", "nodes being drained, updated or verified"),
            column("Failed", "integer", ".status.failed", "nodes that failed or rolled back"),
            column("Paused", "boolean", ".spec.paused", "no new node starts"),
            column("Message", "string", ".status.message", "why the plan is where it is", 1),
            column("Age", "date", ".metadata.creationTimestamp", "when the plan was made"),
          ],
          schema: {
            openAPIV3Schema: {
              type: "object",
              description:
                "An OS release, live patch or hardening profile rolled out over Nodes, node by node.",
              required: ["spec"],
              properties: {
                apiVersion: { type: "string" },
                kind: { type: "string" },
                metadata: { type: "object" },
                spec,
                status: structural(UpdatePlanStatusSchema as unknown as Json),
              },
            },
          },
        },
      ],
    },
  };
}
