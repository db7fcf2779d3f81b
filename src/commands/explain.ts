// `nixremote explain [LOG]`: a build's output (a file, or standard input) read for what the
// build hook did. Exit 0 when it found nothing wrong, 1 when it explained failures, 2 on a
// usage error. It only reads.
import * as fs from 'node:fs';
import { makeOutput } from '../io/output.js';
import { explainLog } from '../explain/log.js';
import { printable } from '../text/printable.js';
import { UsageError } from '../validate.js';

export interface ExplainFlags {
  json?: boolean;
}

async function readInput(file: string | undefined): Promise<string> {
  if (file && file !== '-') {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(
        `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
      );
    }
  }
  if (process.stdin.isTTY)
    throw new UsageError('give a log file, or pipe a build into it: nix build ... 2>&1 | nixremote explain');
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

export async function explainCommand(file: string | undefined, flags: ExplainFlags): Promise<number> {
  const findings = explainLog(await readInput(file));
  const failed = findings.filter((f) => f.kind === 'failed');
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ findings }, null, 2)}\n`);
    return failed.length ? 1 : 0;
  }
  const out = makeOutput();
  if (!findings.length) {
    out.info('No remote build in this log: nothing was sent to a builder, and no remote-build failure was printed.');
    return 0;
  }
  for (const f of findings) {
    const where = f.builder ? ` on ${f.builder}` : '';
    if (f.kind === 'sent') {
      out.ok(`line ${f.line}: ${f.derivation} was sent to be built${where}`);
      continue;
    }
    out.fail(`line ${f.line}${where}: ${printable(f.said.split('\n')[0]!.trim()).slice(0, 200)}`);
    out.info(`    cause: ${f.cause}`);
    out.info(`    fix:   ${f.fix}`);
  }
  const builders = [...new Set(failed.map((f) => f.builder).filter(Boolean))];
  out.info('');
  out.info(
    failed.length
      ? `${failed.length} remote-build failure${failed.length > 1 ? 's' : ''} explained${builders.length ? ` (${builders.join(', ')})` : ''}; lines nixremote does not know are left out`
      : 'No remote-build failure in this log.',
  );
  return failed.length ? 1 : 0;
}
