import { z } from 'zod';

/**
 * Properties of the file sink. Exactly one of:
 * - `path`: a directory; each table gets its own `<schema>.<table>.jsonl` inside it.
 * - `file`: a single `.jsonl` file that receives the events of every table.
 *
 * Relative paths are resolved against the server's working directory.
 */
export const fileSinkConfigSchema = z
  .object({
    /** Set when the connection has a `dsn:`; the file sink has no use for one. */
    dsn: z.string().optional(),
    path: z.string().min(1, 'must not be empty').optional(),
    file: z.string().min(1, 'must not be empty').optional(),
    /**
     * fsync every touched file before `write()` resolves. Turning it off trades the
     * durability guarantee for speed and is only meant for throw-away debugging.
     */
    fsync: z.boolean().default(true),
  })
  .strict()
  .superRefine((value, ctx) => {
    if (value.path !== undefined && value.file !== undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['file'],
        message: 'set either "path" (a directory) or "file", not both',
      });
    } else if (value.path === undefined && value.file === undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['path'],
        message: 'required: "path" (a directory, one file per table) or "file" (one file for all tables)',
      });
    }
  });

export type FileSinkConfig = z.infer<typeof fileSinkConfigSchema>;
