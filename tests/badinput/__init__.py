"""Generated bad-input suite: hundreds of malformed inputs, one oracle.

The generators (one module per group) write deliberately broken inputs into a temporary
directory and describe each case as a `Case`: the `mcusim` command line, environment, the
exit codes that are correct for it and, where a result exists, a reference to compare with.
`runner.run_cases` runs every case in a child forked from the test process (which has
already imported mcusim, so a case costs milliseconds, not an interpreter start), under a
2 GiB address-space limit (RLIMIT_AS) and a 20 s wall-clock limit, and `runner.check`
judges it.

Groups (see each module's docstring for the mutations):

* ``elf``      -- a real built image truncated, with ELF/program/section header fields set
  to 0, 1, huge or odd values, segments moved past EOF or onto peripherals, random byte
  flips in .symtab/.strtab/.debug_*; non-regular paths (/dev/zero, a FIFO, a directory,
  empty, missing, a sparse 3 GiB file).  `run` and `profile --elf`.
* ``model``    -- the zoo's digits-cnn mutated: missing keys, wrong types, zero/negative/
  huge dims (2**63-1, 1e9), unknown layer types, kernels larger than their input, nesting
  2000 deep, non-UTF-8, NaN/inf, markup and very long names, 1000 layers, non-regular files;
  plus TOML-equivalent rewrites of the zoo model.  `budget`, `step`, `verify`, `profile`.
* ``npz``      -- user data sets for `train`/`step`/`profile --dataset`: wrong keys, shape
  mismatches, extreme label values and dtypes, exotic x dtypes, headers declaring huge
  shapes, broken zips, NaN; plus encodings of the same arrays that must train identically.
* ``cli``      -- every numeric option of every command with -1, 0, 1, 1e400, nan, inf,
  2**32, 2**64, '', 'abc', '-', '--x' and friends; --args; export paths; the environment
  variables MCUSIM_TRACER, MCUSIM_CACHE_DIR, MCUSIM_TOOLCHAIN.
* ``catalog``  -- user MCU catalogs (`--catalog`) from `mcusim mcus --template`: unsafe names
  (path traversal, markup, leading '-', linker-script injection in region names), bad
  sizes/clocks/figures, missing or unknown cores, duplicates, non-regular files, nesting.

The oracle (`runner.check`), for every case:

* no hang (20 s) and no blow-up (killed by a signal, MemoryError, the 2 GiB limit);
* no "Traceback" anywhere and no "internal error" (a catch-all exit 3 is a failure);
* the exit code is one of the case's expected codes (0 ok, 1 emulated fault or failed
  check, 2 bad input);
* on failure exactly one error line on stderr (``mcusim: error: ...`` or argparse's
  ``mcusim CMD: error: ...``; progress and warning lines aside), and with exit 2 nothing
  else; where the case names its culprit (a file, an option) the error line mentions it;
* with --json: on success stdout is strict JSON (no NaN/Infinity tokens), on failure
  stdout is empty or strict JSON;
* where a result exists and a reference is defined (the unmutated ELF's r0/cycles, the zoo
  model's `step --json`, the base data set's training record, the template catalog's
  entry), the result equals the reference: no silent wrong results.
"""
