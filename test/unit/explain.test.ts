// `explain` on the logs real builds printed: the recordings of the fault table, per version.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { explainLog } from '../../src/explain/log.js';
import { blocks, RECORDED_BUILD_CAUSES, RECORDED_CAUSES, recordings } from './recordings.js';

describe('explain, on what real builds printed', () => {
  for (const [dir, file, fault] of recordings()) {
    // Without restrict, RequestTTY makes the build hang until the recorder stopped it: no remote failure to name.
    if (fault === 'client-requesttty-force') continue;
    test(`${dir}/${file}`, () => {
      for (const b of blocks(dir, file).filter((x) => x.command.includes('nix-build'))) {
        const found = explainLog(b.stderr);
        const failed = found.filter((f) => f.kind === 'failed');
        if (b.exit === 0) {
          assert.deepEqual(failed, [], `${b.command.slice(0, 100)}: a build that worked`);
          if (/building '[^']+' on '/.test(b.stderr))
            assert.ok(
              found.some((f) => f.kind === 'sent' && f.builder === '127.0.0.1'),
              'it names the builder',
            );
          continue;
        }
        assert.ok(failed.length, `${b.command.slice(0, 100)}: nothing explained in\n${b.stderr}`);
        const first = failed[0]!;
        // The first failure, by the entries the catalogue names that fault's builds with.
        assert.ok(
          (RECORDED_BUILD_CAUSES[fault] ?? RECORDED_CAUSES[fault])?.includes(first.id!),
          `${b.command.slice(0, 100)}: named ${first.id}: ${first.cause}`,
        );
        // The builder is named: by Nix's line, or by the "building ... on" just before it.
        if (/cannot build on '|build of '[^']+' on '|building '[^']+' on '/.test(b.stderr))
          assert.equal(first.builder, '127.0.0.1', JSON.stringify(first));
      }
    });
  }
});

describe('explain, on the build hook listing its machines', () => {
  test('Failed to find a machine: why each listed machine cannot take the derivation (2.12+ listing)', () => {
    const log = [
      'Failed to find a machine for remote build!',
      'derivation: abc-x.drv',
      'required (system, features): (aarch64-linux, [big-parallel])',
      '2 available machines:',
      '(systems, maxjobs, supportedFeatures, mandatoryFeatures)',
      '([x86_64-linux], 2, [big-parallel], [])',
      '([aarch64-linux], 1, [], [])',
      'error: unable to start any build; remote machines may not have all required system features.',
    ].join('\n');
    const [f, ...rest] = explainLog(log);
    assert.equal(f!.id, 'hook.no-machine');
    assert.equal(
      f!.cause,
      'none of the 2 builders can take aarch64-linux with big-parallel: machine 1: it needs system aarch64-linux; the builder offers x86_64-linux; machine 2: it requires feature big-parallel, which the builder does not offer',
    );
    assert.equal(rest[0]?.id, 'hook.no-machine-features');
  });
  test('the listing of Nix before 2.12 cannot be read back, and is not guessed at', () => {
    const log = [
      'Failed to find a machine for remote build!',
      'derivation: abc-x.drv',
      'required (system, features): (x86_64-linux, )',
      '1 available machines:',
      '(systems, maxjobs, supportedFeatures, mandatoryFeatures)',
      '(x86_64-linux, i686-linux, 2, benchmark, big-parallel, )',
    ].join('\n');
    assert.match(explainLog(log)[0]!.cause!, /^none of the 1 builders .* cannot be read back \(before 2\.12\)/);
    const none = explainLog(
      'Failed to find a machine for remote build!\nderivation: a.drv\nrequired (system, features): (x86_64-linux, [])\n0 available machines:\n(systems, maxjobs, supportedFeatures, mandatoryFeatures)',
    );
    assert.equal(none[0]!.cause, 'no builder is configured for the build hook, and it needs x86_64-linux');
  });
  test('a log without remote builds, and lines nixremote does not know, say nothing', () => {
    assert.deepEqual(explainLog('these 2 derivations will be built:\nerror: something only a human knows\n'), []);
  });
});
