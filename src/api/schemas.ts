/** The zod schemas that validate requests and describe answers; /v1/openapi.json is built from them. */
import { z } from "@hono/zod-openapi";
import {
  DEFAULT_LEASE_SECONDS,
  MAX_CLAIM,
  MAX_LEASE_SECONDS,
  MAX_VERSIONS_LISTED,
  MIN_LEASE_SECONDS,
} from "../shared/limits.ts";
import { FILE_NAME, MODEL_ID, USER_ID } from "./ids.ts";

export const ErrorSchema = z
  .object({ error: z.object({ code: z.string(), message: z.string() }) })
  .openapi("Error");

const modelId = z
  .string()
  .regex(MODEL_ID)
  .openapi({ param: { name: "model", in: "path" }, example: "smollm2-135m" });
const userId = z
  .string()
  .regex(USER_ID)
  .openapi({ param: { name: "user", in: "path" }, example: "alice" });

export const ModelParams = z.object({ model: modelId });
export const UserParams = z.object({ model: modelId, user: userId });
export const FileParams = z.object({
  model: modelId,
  name: z
    .string()
    .regex(FILE_NAME)
    .openapi({ param: { name: "name", in: "path" }, example: "model.onnx" }),
});
/**
 * A canonical positive decimal integer: digits only, no leading zero, sign, exponent, fraction
 * or blank, at most `max` (so "1e3", "01", "+1", "1.0" and " 1" are refused, not read as numbers).
 */
export const positiveInt = (max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^[1-9][0-9]*$/, "must be a positive integer in canonical decimal form")
    .refine((s) => s.length <= 16 && Number(s) <= max, `must be at most ${max}`)
    .transform(Number);

export const VersionParams = UserParams.extend({
  version: positiveInt().openapi({
    param: { name: "version", in: "path" },
    example: "3",
    type: "string",
    pattern: "^[1-9][0-9]*$",
  }),
});
export const JobParams = z.object({
  id: z
    .string()
    .uuid()
    .openapi({ param: { name: "id", in: "path" } }),
});

export const VersionsQuery = z.object({
  limit: positiveInt(MAX_VERSIONS_LISTED)
    .optional()
    .openapi({
      param: { name: "limit", in: "query" },
      example: "10",
      type: "string",
      pattern: "^[1-9][0-9]*$",
    }),
});

export const Binary = z.string().openapi({ type: "string", format: "binary" });

export const StoredSchema = z
  .object({ version: z.number().int(), etag: z.string(), bytes: z.number().int() })
  .openapi("StoredAdapter");

export const VersionSchema = z
  .object({
    version: z.number().int(),
    etag: z.string(),
    bytes: z.number().int(),
    created: z.string(),
    source: z.string(),
  })
  .openapi("AdapterVersion");

export const VersionsSchema = z
  .object({ versions: z.array(VersionSchema) })
  .openapi("AdapterVersions");

// ---- jobs -----------------------------------------------------------------------------------

export const TextData = z.strictObject({
  kind: z.literal("text"),
  texts: z.array(z.string().min(1)).min(1),
});
export const LabelsData = z.strictObject({
  kind: z.literal("labels"),
  examples: z
    .array(z.strictObject({ text: z.string().min(1), label: z.string().min(1).max(64) }))
    .min(1),
});
export const TrainingData = z
  .discriminatedUnion("kind", [TextData, LabelsData])
  .openapi("TrainingData");

export const TrainingOptions = z
  .strictObject({
    steps: z.number().int().min(1).max(100_000).optional(),
    lr: z.number().positive().max(1).optional(),
    seq_len: z.number().int().min(8).max(8192).optional(),
    seed: z.number().int().min(0).optional(),
    batch_size: z.number().int().min(1).max(256).optional(),
  })
  .openapi("TrainingOptions");

export const CreateJobBody = z
  .strictObject({ data: TrainingData, options: TrainingOptions.optional() })
  .openapi("CreateJob");

export const JobSchema = z
  .object({
    id: z.string(),
    model: z.string(),
    user: z.string(),
    status: z.enum(["queued", "running", "succeeded", "failed"]),
    attempts: z.number().int(),
    created: z.string(),
    updated: z.string(),
    lease_expires: z.string().nullable(),
    error: z.string().nullable(),
    version: z.number().int().nullable(),
    options: TrainingOptions,
  })
  .openapi("Job");

export const JobAnswer = z.object({ job: JobSchema });

const leaseSeconds = z.number().int().min(MIN_LEASE_SECONDS).max(MAX_LEASE_SECONDS);

export const ClaimBody = z
  .strictObject({
    models: z.array(z.string().regex(MODEL_ID)).max(64).optional(),
    max: z.number().int().min(1).max(MAX_CLAIM).default(1),
    lease_seconds: leaseSeconds.default(DEFAULT_LEASE_SECONDS),
  })
  .openapi("Claim");

export const ClaimAnswer = z.object({
  jobs: z.array(z.object({ job: JobSchema, lease_id: z.string() })),
});

export const HeartbeatBody = z
  .strictObject({ lease_id: z.string().min(1), lease_seconds: leaseSeconds.optional() })
  .openapi("Heartbeat");

export const FailBody = z
  .strictObject({
    lease_id: z.string().min(1),
    reason: z.string().min(1).max(2000),
    retry: z.boolean().default(false),
  })
  .openapi("Fail");

export const CompleteAnswer = z.object({
  job: JobSchema,
  version: z.number().int(),
  etag: z.string(),
});

export const LeaseHeader = z.object({
  "x-lease-id": z
    .string()
    .min(1)
    .openapi({ param: { name: "x-lease-id", in: "header" } }),
});

export const ModelsAnswer = z.object({ models: z.array(z.record(z.string(), z.unknown())) });
