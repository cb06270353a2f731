// A restricted unpickler for PyTorch checkpoints. It builds inert values and
// never calls anything: globals are looked up in a small allow-list and become
// markers, and calls (REDUCE, NEWOBJ, …) become records of the call that the
// checkpoint reader interprets. Any other global is refused the moment it is
// read. Nothing may change an object after a call has used it: BUILD on a
// call's result is refused, and so is adding to a container after it was
// passed to a call (Python would have read it at the time of the call). Every
// count and length is bounded (see the constants below), and memo references
// and DUP share objects, never copy them.
import { ForbiddenGlobalError, ModelFormatError, type ModelFormatErrorOptions } from "./errors.ts";
import type { ModelFormat } from "./types.ts";

/** A Python global from the allow-list, e.g. `torch._utils._rebuild_tensor_v2`. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name` */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** The record of a call `fn(*args)` (REDUCE, NEWOBJ, INST, OBJ); nothing ran. */
export class PyCall {
  constructor(
    readonly fn: PyGlobal,
    readonly args: readonly PyValue[],
    /** Offset in the file of the opcode that made the call. */
    readonly offset: number,
  ) {}
}

/**
 * A `collections.OrderedDict`. BUILD may give one attributes (a state dict's
 * `_metadata`): they are kept in `states` for the reader to check, since
 * `torch.load` returns them as attributes of the dict.
 */
export class PyOrderedDict extends Map<PyValue, PyValue> {
  /** The BUILD states, in order. */
  readonly states: PyValue[] = [];
}

/** A Python set or frozenset (kept as a list of items). */
export class PySet {
  constructor(readonly items: PyValue[], readonly frozen: boolean) {}
}

/** What a persistent id resolves to; opaque to the unpickler. */
export interface PyPersistent {
  readonly persistent: true;
}

/**
 * An unpickled value. Tuples are frozen arrays, lists are plain arrays, dicts
 * (and `OrderedDict`) are `Map`s, ints are numbers (bigints when unsafe).
 */
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | readonly PyValue[]
  | Map<PyValue, PyValue>
  | PyGlobal
  | PyCall
  | PySet
  | PyPersistent;

/** Options for {@linkcode unpickle}. */
export interface UnpickleOptions {
  /** File name for errors. */
  file: string;
  /** Format for errors. */
  format: ModelFormat;
  /** Offset of `bytes[0]` in the file, for error offsets. */
  baseOffset?: number;
  /** Resolves a persistent id (BINPERSID); without it persistent ids are refused. */
  persistentLoad?: (pid: PyValue, offset: number) => PyValue;
  /**
   * True when `bytes` is only a window of a longer input: running off its end
   * then throws {@linkcode NeedMoreInput} instead of a format error.
   */
  partial?: boolean;
}

/** The pickle runs past the end of a partial window; retry with more bytes. */
export class NeedMoreInput extends Error {
  constructor() {
    super("Cannot finish pickle: more input is needed");
    this.name = "NeedMoreInput";
  }
}

// Bounds that no real checkpoint comes near but that keep hostile input cheap.
const MAX_STACK = 1 << 20;
const MAX_MEMO = 1 << 20;
const MAX_MARKS = 1 << 16;
const MAX_LONG_BYTES = 64;
const MAX_LINE = 1 << 16;
// Containers and call records a pickle may create: a state dict costs about
// seven per tensor (call, argument tuples, size, stride, hooks), so this is a
// million tensors and more, and at most a few hundred MB of objects.
const MAX_OBJECTS = 1 << 23;
// References held by containers and call records, counted each time one is
// stored (a copy, as `set(list)` or a call's arguments, counts again). Memo
// references and DUP are free: they share the object. This keeps a pickle
// that copies one big list over and over to 256 MB of references.
const MAX_REFS = 1 << 25;

const STORAGE_NAMES = [
  "DoubleStorage",
  "FloatStorage",
  "HalfStorage",
  "BFloat16Storage",
  "LongStorage",
  "IntStorage",
  "ShortStorage",
  "CharStorage",
  "ByteStorage",
  "BoolStorage",
  "ComplexFloatStorage",
  "ComplexDoubleStorage",
  "UntypedStorage",
  "QUInt8Storage",
  "QInt8Storage",
  "QInt32Storage",
  "QUInt4x2Storage",
  "QUInt2x4Storage",
];

/** Element types of `torch.<dtype>` globals, by name. */
export const TORCH_DTYPES: Readonly<Record<string, string>> = {
  float64: "F64",
  double: "F64",
  float32: "F32",
  float: "F32",
  float16: "F16",
  half: "F16",
  bfloat16: "BF16",
  int64: "I64",
  long: "I64",
  int32: "I32",
  int: "I32",
  int16: "I16",
  short: "I16",
  int8: "I8",
  uint8: "U8",
  uint16: "U16",
  uint32: "U32",
  uint64: "U64",
  bool: "BOOL",
  complex64: "C64",
  cfloat: "C64",
  complex128: "C128",
  cdouble: "C128",
  float8_e4m3fn: "F8_E4M3",
  float8_e5m2: "F8_E5M2",
  float8_e4m3fnuz: "F8_E4M3FNUZ",
  float8_e5m2fnuz: "F8_E5M2FNUZ",
  float8_e8m0fnu: "F8_E8M0",
};

const ALLOWED = new Set<string>([
  "torch._utils._rebuild_tensor",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_tensor_v3",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
  "torch._tensor._rebuild_from_type_v2",
  "torch._tensor.Tensor",
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
  "torch.Size",
  "torch.device",
  "collections.OrderedDict",
  "builtins.set",
  "builtins.frozenset",
  "__builtin__.set",
  "__builtin__.frozenset",
  "_codecs.encode",
  ...STORAGE_NAMES.map((n) => `torch.${n}`),
  ...Object.keys(TORCH_DTYPES).map((n) => `torch.${n}`),
]);

// The allowed globals that are classes: the only ones NEWOBJ may instantiate.
const CLASSES = new Set<string>([
  "torch._tensor.Tensor",
  "torch.Tensor",
  "torch.nn.parameter.Parameter",
  "torch.Size",
  "torch.device",
  "collections.OrderedDict",
  "builtins.set",
  "builtins.frozenset",
  "__builtin__.set",
  "__builtin__.frozenset",
  ...STORAGE_NAMES.map((n) => `torch.${n}`),
]);

/** Whether a global may appear in a checkpoint (as an inert marker). */
export function isAllowedGlobal(module: string, name: string): boolean {
  return ALLOWED.has(`${module}.${name}`);
}

const EMPTY_TUPLE: readonly PyValue[] = Object.freeze([]);

// deno-fmt-ignore
const enum Op {
  MARK = 0x28, STOP = 0x2e, POP = 0x30, POP_MARK = 0x31, DUP = 0x32,
  FLOAT = 0x46, INT = 0x49, BININT = 0x4a, BININT1 = 0x4b, LONG = 0x4c,
  BININT2 = 0x4d, NONE = 0x4e, PERSID = 0x50, BINPERSID = 0x51, REDUCE = 0x52,
  STRING = 0x53, BINSTRING = 0x54, SHORT_BINSTRING = 0x55, UNICODE = 0x56,
  BINUNICODE = 0x58, APPEND = 0x61, BUILD = 0x62, GLOBAL = 0x63, DICT = 0x64,
  EMPTY_DICT = 0x7d, APPENDS = 0x65, GET = 0x67, BINGET = 0x68, INST = 0x69,
  LONG_BINGET = 0x6a, LIST = 0x6c, EMPTY_LIST = 0x5d, OBJ = 0x6f, PUT = 0x70,
  BINPUT = 0x71, LONG_BINPUT = 0x72, SETITEM = 0x73, TUPLE = 0x74,
  EMPTY_TUPLE = 0x29, SETITEMS = 0x75, BINFLOAT = 0x47,
  PROTO = 0x80, NEWOBJ = 0x81, TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87,
  NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
  BINBYTES = 0x42, SHORT_BINBYTES = 0x43,
  SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d, BINBYTES8 = 0x8e,
  EMPTY_SET = 0x8f, ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92,
  STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95,
  BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97, READONLY_BUFFER = 0x98,
}

const MARK = Symbol("mark");
type Slot = PyValue | typeof MARK;

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * Unpickles one pickle starting at `start` in `bytes`. Returns the value and
 * the offset just past its STOP opcode.
 */
export function unpickle(
  bytes: Uint8Array,
  start: number,
  options: UnpickleOptions,
): { value: PyValue; end: number } {
  return new Unpickler(bytes, start, options).run();
}

class Unpickler {
  #b: Uint8Array;
  #pos: number;
  #opts: UnpickleOptions;
  #stack: Slot[] = [];
  #marks: number[] = [];
  #memo = new Map<number, PyValue>();
  #opStart = 0;
  #objects = 0;
  #refs = 0;
  #codecBytes = 0;
  // Containers a call's arguments hold (deeply), and the call: changing one
  // afterwards is refused.
  #sealed = new WeakMap<object, PyCall>();

  constructor(bytes: Uint8Array, start: number, options: UnpickleOptions) {
    this.#b = bytes;
    this.#pos = start;
    this.#opts = options;
  }

  #where(offset = this.#opStart): ModelFormatErrorOptions {
    return {
      file: this.#opts.file,
      format: this.#opts.format,
      offset: (this.#opts.baseOffset ?? 0) + offset,
    };
  }

  #fail(message: string): ModelFormatError {
    return new ModelFormatError(
      "bad-pickle",
      `Cannot read pickle: ${message}`,
      this.#where(),
    );
  }

  /** Offset in the file of the current opcode. */
  #offset(): number {
    return (this.#opts.baseOffset ?? 0) + this.#opStart;
  }

  /** Counts a new container or call record holding `refs` references. */
  #made<T>(v: T, refs = 0): T {
    if (++this.#objects > MAX_OBJECTS) {
      throw new ModelFormatError(
        "too-large",
        `Cannot read pickle: it creates more than ${MAX_OBJECTS} containers and calls`,
        this.#where(),
      );
    }
    this.#addRefs(refs);
    return v;
  }

  #addRefs(n: number): void {
    this.#refs += n;
    if (this.#refs > MAX_REFS) {
      throw new ModelFormatError(
        "too-large",
        `Cannot read pickle: its containers and calls hold more than ${MAX_REFS} references`,
        this.#where(),
      );
    }
  }

  /**
   * Marks every container a call's arguments reach as read by `call`. A
   * sealed container's contents are sealed too, so each is walked once.
   */
  #seal(call: PyCall): void {
    const todo: PyValue[] = [call.args];
    while (todo.length > 0) {
      const v = todo.pop()!;
      if (
        !(Array.isArray(v) || v instanceof Map || v instanceof PySet) ||
        this.#sealed.has(v)
      ) continue;
      this.#sealed.set(v, call);
      if (Array.isArray(v)) { for (const x of v) todo.push(x); }
      else if (v instanceof PySet) { for (const x of v.items) todo.push(x); }
      else {
        for (const [k, x] of v) todo.push(k, x);
        if (v instanceof PyOrderedDict) { for (const x of v.states) todo.push(x); }
      }
    }
  }

  /** Refuses to change a container a call has already read. */
  #changing(target: object, op: string): void {
    const by = this.#sealed.get(target);
    if (by !== undefined) {
      throw this.#fail(
        `it changes a ${
          target instanceof Map ? "dict" : target instanceof PySet ? "set" : "list"
        } with ${op} after passing it to ${by.fn.qualified} (at byte ${by.offset}), which read it before the change`,
      );
    }
  }

  #need(n: number): void {
    if (n < 0 || this.#pos + n > this.#b.byteLength) {
      if (this.#opts.partial) throw new NeedMoreInput();
      throw new ModelFormatError(
        "bad-pickle",
        `Cannot read pickle: it needs ${n} more bytes but only ${
          this.#b.byteLength - this.#pos
        } remain before its end`,
        this.#where(),
      );
    }
  }

  #u8(): number {
    this.#need(1);
    return this.#b[this.#pos++]!;
  }

  #take(n: number): Uint8Array {
    this.#need(n);
    const out = this.#b.subarray(this.#pos, this.#pos + n);
    this.#pos += n;
    return out;
  }

  #uint(n: 1 | 2 | 4 | 8): number {
    const b = this.#take(n);
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + b[i]!;
    if (!Number.isSafeInteger(v)) {
      throw this.#fail(`a length of ${v} is too large`);
    }
    return v;
  }

  #int32(): number {
    const b = this.#take(4);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24));
  }

  #line(): string {
    const limit = Math.min(this.#b.byteLength, this.#pos + MAX_LINE);
    for (let i = this.#pos; i < limit; i++) {
      if (this.#b[i] === 0x0a) {
        const text = latin1(this.#b.subarray(this.#pos, i));
        this.#pos = i + 1;
        return text;
      }
    }
    if (limit === this.#b.byteLength) {
      this.#need(this.#b.byteLength - this.#pos + 1);
    }
    throw this.#fail(`a text line is longer than ${MAX_LINE} bytes`);
  }

  #push(v: Slot): void {
    if (this.#stack.length >= MAX_STACK) {
      throw this.#fail(`its stack grows past ${MAX_STACK} items`);
    }
    this.#stack.push(v);
  }

  #pop(): PyValue {
    const base = this.#marks.length > 0 ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= base) {
      throw this.#fail("it pops from an empty stack");
    }
    return this.#stack.pop() as PyValue;
  }

  #top(): PyValue {
    const base = this.#marks.length > 0 ? this.#marks[this.#marks.length - 1]! : 0;
    if (this.#stack.length <= base) {
      throw this.#fail("it reads from an empty stack");
    }
    return this.#stack[this.#stack.length - 1] as PyValue;
  }

  #popMark(): PyValue[] {
    const mark = this.#marks.pop();
    if (mark === undefined) {
      throw this.#fail("it uses a MARK that was never set");
    }
    const items = this.#stack.splice(mark) as PyValue[];
    return items;
  }

  #memoPut(index: number, v: PyValue): void {
    if (!this.#memo.has(index) && this.#memo.size >= MAX_MEMO) {
      throw this.#fail(`its memo grows past ${MAX_MEMO} entries`);
    }
    this.#memo.set(index, v);
  }

  #memoGet(index: number): PyValue {
    if (!this.#memo.has(index)) {
      throw this.#fail(`it reads memo entry ${index}, which was never stored`);
    }
    return this.#memo.get(index)!;
  }

  #global(module: string, name: string): PyGlobal {
    if (!isAllowedGlobal(module, name)) {
      throw new ForbiddenGlobalError(`${module}.${name}`, this.#where());
    }
    return new PyGlobal(module, name);
  }

  #call(fn: PyValue, args: PyValue, op: string): PyValue {
    if (!(fn instanceof PyGlobal)) {
      throw this.#fail(`it calls something that is not an allowed global (${op})`);
    }
    if (!Array.isArray(args) || !Object.isFrozen(args)) {
      throw this.#fail(
        `it calls ${fn.qualified} with arguments that are not a tuple`,
      );
    }
    const list = args as readonly PyValue[];
    // NEWOBJ runs cls.__new__(cls, *args) and nothing else: only classes
    // have one, and for some (OrderedDict, set) it ignores the arguments.
    const isNew = op === "NEWOBJ" || op === "NEWOBJ_EX";
    if (isNew && !CLASSES.has(fn.qualified)) {
      throw this.#fail(`it instantiates ${fn.qualified} with ${op}, but that is not a class`);
    }
    switch (fn.qualified) {
      case "collections.OrderedDict": {
        const map = this.#made(new PyOrderedDict());
        if (isNew && list.length !== 0) {
          throw this.#fail(
            `it creates an OrderedDict with ${op} and arguments (Python would ignore them)`,
          );
        }
        if (list.length === 1 && Array.isArray(list[0])) {
          const pairs = list[0] as PyValue[];
          this.#addRefs(2 * pairs.length);
          for (const pair of pairs) {
            if (!Array.isArray(pair) || pair.length !== 2) {
              throw this.#fail(
                "it builds an OrderedDict from items that are not pairs",
              );
            }
            map.set(this.#key(pair[0] as PyValue), pair[1] as PyValue);
          }
        } else if (list.length !== 0) {
          throw this.#fail(
            "it builds an OrderedDict from unexpected arguments",
          );
        }
        return map;
      }
      case "builtins.set":
      case "__builtin__.set":
      case "builtins.frozenset":
      case "__builtin__.frozenset": {
        const items = list.length === 0 ? [] : list[0];
        if (list.length > 1 || !Array.isArray(items)) {
          throw this.#fail(`it builds a set from unexpected arguments`);
        }
        if (isNew && fn.name === "set" && items.length > 0) {
          throw this.#fail(`it creates a set with ${op} and items (Python would ignore them)`);
        }
        return this.#made(
          new PySet([...items as PyValue[]], fn.name === "frozenset"),
          items.length,
        );
      }
      case "torch.Size": {
        const dims = list[0];
        if (
          list.length !== 1 || !Array.isArray(dims) ||
          !dims.every((d) => typeof d === "number" || typeof d === "bigint")
        ) {
          throw this.#fail("it builds a torch.Size from something other than integers");
        }
        return this.#made(Object.freeze([...dims as PyValue[]]), dims.length);
      }
      case "_codecs.encode": {
        // Protocol 2 pickles bytes as _codecs.encode(text, "latin1").
        const [text, encoding] = list;
        if (
          list.length !== 2 || typeof text !== "string" ||
          (encoding !== "latin1" && encoding !== "latin-1")
        ) {
          throw this.#fail(
            "it calls _codecs.encode with arguments other than (str, 'latin1')",
          );
        }
        // Each string in the pickle may be encoded about once.
        this.#codecBytes += text.length;
        if (this.#codecBytes > this.#b.byteLength) {
          throw new ModelFormatError(
            "too-large",
            `Cannot read pickle: _codecs.encode makes more bytes than the pickle's ${this.#b.byteLength}`,
            this.#where(),
          );
        }
        const out = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) {
          const c = text.charCodeAt(i);
          if (c > 0xff) {
            throw this.#fail("it encodes a non-latin1 string as latin1");
          }
          out[i] = c;
        }
        return out;
      }
      default: {
        const call = this.#made(new PyCall(fn, list, this.#offset()));
        this.#seal(call);
        return call;
      }
    }
  }

  run(): { value: PyValue; end: number } {
    while (true) {
      this.#opStart = this.#pos;
      const op = this.#u8();
      switch (op) {
        case Op.PROTO: {
          const v = this.#u8();
          if (v > 5) {
            throw this.#fail(`it uses protocol ${v} (at most 5 is supported)`);
          }
          break;
        }
        case Op.FRAME: {
          // Frames only group opcodes; check the length and read on.
          const n = this.#uint(8);
          this.#need(n);
          break;
        }
        case Op.STOP: {
          if (this.#marks.length !== 0) {
            throw this.#fail("it stops with a MARK still open");
          }
          const value = this.#pop();
          if (this.#stack.length !== 0) {
            throw this.#fail("it stops with more than one value on the stack");
          }
          return { value, end: this.#pos };
        }
        case Op.MARK:
          if (this.#marks.length >= MAX_MARKS) {
            throw this.#fail(`it nests more than ${MAX_MARKS} MARKs`);
          }
          this.#marks.push(this.#stack.length);
          break;
        case Op.POP:
          // POP right after a MARK discards the mark, as in CPython.
          if (
            this.#marks.length > 0 &&
            this.#marks[this.#marks.length - 1] === this.#stack.length
          ) {
            this.#popMark();
          } else {
            this.#pop();
          }
          break;
        case Op.POP_MARK:
          this.#popMark();
          break;
        case Op.DUP:
          this.#push(this.#top());
          break;
        case Op.NONE:
          this.#push(null);
          break;
        case Op.NEWTRUE:
          this.#push(true);
          break;
        case Op.NEWFALSE:
          this.#push(false);
          break;
        case Op.BININT:
          this.#push(this.#int32());
          break;
        case Op.BININT1:
          this.#push(this.#u8());
          break;
        case Op.BININT2:
          this.#push(this.#uint(2));
          break;
        case Op.LONG1:
          this.#push(this.#long(this.#u8()));
          break;
        case Op.LONG4: {
          const n = this.#int32();
          if (n < 0) throw this.#fail("it has a LONG4 with a negative length");
          this.#push(this.#long(n));
          break;
        }
        case Op.INT: {
          // Python reads INT with C's strtol (base 0: "010" is 8, "0x10"
          // 16), then as a Python int; a 2-character text of 0 or 1 ("01",
          // "+1", "-0") is a bool. Only decimal forms, read the same in every
          // base, are accepted.
          const text = this.#line();
          if (/^(?:0[01]|[+-]0|\+1)$/.test(text)) this.#push(text.endsWith("1"));
          else this.#push(this.#parseInt(text));
          break;
        }
        case Op.LONG:
          this.#push(this.#parseInt(this.#line().replace(/L$/, "")));
          break;
        case Op.FLOAT: {
          // Python's float syntax: decimals, and inf, infinity and nan in any
          // case; no spaces, underscores or hex (JavaScript's Number reads
          // those). A decimal past the double range fails in Python.
          const text = this.#line();
          const m =
            /^([+-]?)(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(inf|infinity)|(nan))$/i
              .exec(text);
          if (m === null) {
            throw this.#fail(
              `it has a FLOAT that is not a Python float: "${text.slice(0, 40)}"`,
            );
          }
          const sign = m[1] === "-" ? -1 : 1;
          const v = m[2] !== undefined ? Number(text) : m[3] !== undefined ? sign * Infinity : NaN;
          if (m[2] !== undefined && !Number.isFinite(v)) {
            throw this.#fail(`it has a FLOAT too large for a double: "${text.slice(0, 40)}"`);
          }
          this.#push(v);
          break;
        }
        case Op.BINFLOAT: {
          const raw = this.#take(8);
          this.#push(
            new DataView(raw.buffer, raw.byteOffset, 8).getFloat64(0, false),
          );
          break;
        }
        case Op.BINUNICODE:
          this.#push(this.#text(this.#uint(4)));
          break;
        case Op.SHORT_BINUNICODE:
          this.#push(this.#text(this.#u8()));
          break;
        case Op.BINUNICODE8:
          this.#push(this.#text(this.#uint(8)));
          break;
        case Op.UNICODE:
          this.#push(this.#rawUnicodeEscape(this.#line()));
          break;
        case Op.STRING:
          this.#push(this.#decode(bytesOf(this.#pyStringLiteral(this.#line()))));
          break;
        // Python 2 str: torch.load decodes it as UTF-8 (its default encoding).
        case Op.BINSTRING: {
          const n = this.#int32();
          if (n < 0) {
            throw this.#fail("it has a BINSTRING with a negative length");
          }
          this.#push(this.#text(n));
          break;
        }
        case Op.SHORT_BINSTRING:
          this.#push(this.#text(this.#u8()));
          break;
        case Op.BINBYTES:
          this.#push(this.#take(this.#uint(4)).slice());
          break;
        case Op.SHORT_BINBYTES:
          this.#push(this.#take(this.#u8()).slice());
          break;
        case Op.BINBYTES8:
        case Op.BYTEARRAY8:
          this.#push(this.#take(this.#uint(8)).slice());
          break;
        case Op.NEXT_BUFFER:
          throw this.#fail("it uses out-of-band buffers (NEXT_BUFFER)");
        case Op.READONLY_BUFFER:
          this.#top();
          break;
        case Op.EMPTY_TUPLE:
          this.#push(EMPTY_TUPLE);
          break;
        case Op.TUPLE: {
          const items = this.#popMark();
          this.#push(this.#made(Object.freeze(items), items.length));
          break;
        }
        case Op.TUPLE1: {
          const a = this.#pop();
          this.#push(this.#made(Object.freeze([a]), 1));
          break;
        }
        case Op.TUPLE2: {
          const b2 = this.#pop();
          const a = this.#pop();
          this.#push(this.#made(Object.freeze([a, b2]), 2));
          break;
        }
        case Op.TUPLE3: {
          const c = this.#pop();
          const b2 = this.#pop();
          const a = this.#pop();
          this.#push(this.#made(Object.freeze([a, b2, c]), 3));
          break;
        }
        case Op.EMPTY_LIST:
          this.#push(this.#made([]));
          break;
        case Op.LIST: {
          const items = this.#popMark();
          this.#push(this.#made(items, items.length));
          break;
        }
        case Op.EMPTY_DICT:
          this.#push(this.#made(new Map()));
          break;
        case Op.DICT: {
          const items = this.#popMark();
          if (items.length % 2 !== 0) {
            throw this.#fail("it builds a dict from an odd number of items");
          }
          const map = this.#made(new Map<PyValue, PyValue>(), items.length);
          for (let i = 0; i < items.length; i += 2) {
            map.set(this.#key(items[i]!), items[i + 1]!);
          }
          this.#push(map);
          break;
        }
        case Op.EMPTY_SET:
          this.#push(this.#made(new PySet([], false)));
          break;
        case Op.FROZENSET: {
          const items = this.#popMark();
          this.#push(this.#made(new PySet(items, true), items.length));
          break;
        }
        case Op.ADDITEMS: {
          const items = this.#popMark();
          const set = this.#top();
          if (!(set instanceof PySet) || set.frozen) {
            throw this.#fail("it adds items to something that is not a set");
          }
          this.#changing(set, "ADDITEMS");
          this.#addRefs(items.length);
          for (const item of items) set.items.push(item);
          break;
        }
        case Op.APPEND: {
          const v = this.#pop();
          const list = this.#list(this.#top());
          this.#changing(list, "APPEND");
          this.#addRefs(1);
          list.push(v);
          break;
        }
        case Op.APPENDS: {
          const items = this.#popMark();
          const list = this.#list(this.#top());
          this.#changing(list, "APPENDS");
          this.#addRefs(items.length);
          for (const item of items) list.push(item);
          break;
        }
        case Op.SETITEM: {
          const v = this.#pop();
          const k = this.#pop();
          const map = this.#dict(this.#top());
          this.#changing(map, "SETITEM");
          this.#addRefs(2);
          map.set(this.#key(k), v);
          break;
        }
        case Op.SETITEMS: {
          const items = this.#popMark();
          if (items.length % 2 !== 0) {
            throw this.#fail("it sets items from an odd number of values");
          }
          const map = this.#dict(this.#top());
          this.#changing(map, "SETITEMS");
          this.#addRefs(items.length);
          for (let i = 0; i < items.length; i += 2) {
            map.set(this.#key(items[i]!), items[i + 1]!);
          }
          break;
        }
        case Op.BINPUT:
          this.#memoPut(this.#u8(), this.#top());
          break;
        case Op.LONG_BINPUT:
          this.#memoPut(this.#uint(4), this.#top());
          break;
        case Op.PUT:
          this.#memoPut(this.#index(this.#line()), this.#top());
          break;
        case Op.MEMOIZE:
          this.#memoPut(this.#memo.size, this.#top());
          break;
        case Op.BINGET:
          this.#push(this.#memoGet(this.#u8()));
          break;
        case Op.LONG_BINGET:
          this.#push(this.#memoGet(this.#uint(4)));
          break;
        case Op.GET:
          this.#push(this.#memoGet(this.#index(this.#line())));
          break;
        case Op.GLOBAL: {
          const module = this.#line();
          const name = this.#line();
          this.#push(this.#global(module, name));
          break;
        }
        case Op.STACK_GLOBAL: {
          const name = this.#pop();
          const module = this.#pop();
          if (typeof module !== "string" || typeof name !== "string") {
            throw this.#fail(
              "it has a STACK_GLOBAL whose module or name is not a string",
            );
          }
          this.#push(this.#global(module, name));
          break;
        }
        case Op.INST: {
          const cls = this.#global(this.#line(), this.#line());
          const items = this.#popMark();
          this.#push(this.#call(cls, this.#made(Object.freeze(items), items.length), "INST"));
          break;
        }
        case Op.OBJ: {
          const items = this.#popMark();
          if (items.length === 0) {
            throw this.#fail("it has an OBJ without a class");
          }
          const args = this.#made(Object.freeze(items.slice(1)), items.length - 1);
          this.#push(this.#call(items[0]!, args, "OBJ"));
          break;
        }
        case Op.REDUCE:
        case Op.NEWOBJ: {
          const args = this.#pop();
          const fn = this.#pop();
          this.#push(this.#call(fn, args, op === Op.REDUCE ? "REDUCE" : "NEWOBJ"));
          break;
        }
        case Op.NEWOBJ_EX: {
          const kwargs = this.#pop();
          const args = this.#pop();
          const cls = this.#pop();
          if (!(kwargs instanceof Map) || kwargs.size !== 0) {
            throw this.#fail("it has a NEWOBJ_EX with keyword arguments");
          }
          this.#push(this.#call(cls, args, "NEWOBJ_EX"));
          break;
        }
        case Op.BUILD: {
          // BUILD calls the object's __setstate__ or sets its attributes: for
          // a tensor, set_ (other storage, offset, size or stride) or
          // requires_grad. Only an OrderedDict (a state dict's `_metadata`)
          // may have attributes; the reader checks they hold no tensor.
          const state = this.#pop();
          const target = this.#top();
          if (target instanceof PyCall) {
            throw this.#fail(
              `it changes the object built by ${target.fn.qualified} (at byte ${target.offset}) with BUILD, which would call its __setstate__ (for a tensor: set_ to another storage, offset, size or stride)`,
            );
          }
          if (target instanceof PyOrderedDict) {
            // Python takes a dict, or a (dict, slots dict) pair.
            const parts = Array.isArray(state) && Object.isFrozen(state) && state.length === 2
              ? state as readonly PyValue[]
              : [state];
            if (!parts.every((x) => x === null || x instanceof Map)) {
              throw this.#fail(
                "it sets attributes of an OrderedDict (BUILD) from something that is not a dict",
              );
            }
            this.#changing(target, "BUILD");
            this.#addRefs(1);
            target.states.push(state);
          } else if (target instanceof Map) {
            throw this.#fail(
              "it sets attributes of a plain dict with BUILD (a dict has none: torch.load fails too)",
            );
          } else {
            throw this.#fail(
              "it sets the state (BUILD) of something that is not an object",
            );
          }
          break;
        }
        case Op.BINPERSID:
          this.#push(this.#persistent(this.#pop()));
          break;
        case Op.PERSID:
          this.#push(this.#persistent(this.#line()));
          break;
        default:
          throw this.#fail(
            `it has the unknown opcode 0x${op.toString(16).padStart(2, "0")}`,
          );
      }
    }
  }

  /**
   * A dict key as Python compares it: safe integers are numbers, so 1, 1n and
   * 1.0 match, and True and False are 1 and 0 (`{1: a, True: b, 1.0: c}` has
   * one key). Python also makes an integral float equal to the int of its
   * value (`{2**53: a, 2.0**53: b}` has one key): a float key at or past 2^53
   * is refused, as is NaN (each NaN is a key of its own in Python, one key in
   * a Map), so no two keys are one in Python and two here, or the reverse.
   */
  #key(k: PyValue): PyValue {
    if (typeof k === "boolean") return k ? 1 : 0;
    if (typeof k === "bigint") return small(k);
    if (typeof k === "number" && !Number.isSafeInteger(k)) {
      if (Number.isNaN(k)) {
        throw this.#fail(
          "it has a dict key that is NaN (Python keeps each NaN object as a key of its own)",
        );
      }
      if (Number.isInteger(k)) {
        throw this.#fail(
          `it has the float dict key ${k}, past 2^53 (Python makes it one key with the int of its value)`,
        );
      }
    }
    return k;
  }

  #persistent(pid: PyValue): PyValue {
    const load = this.#opts.persistentLoad;
    if (load === undefined) {
      throw this.#fail("it has a persistent id, which this file cannot have");
    }
    return load(pid, (this.#opts.baseOffset ?? 0) + this.#opStart);
  }

  #list(v: PyValue): PyValue[] {
    if (!Array.isArray(v) || Object.isFrozen(v)) {
      throw this.#fail("it appends to something that is not a list");
    }
    return v as PyValue[];
  }

  #dict(v: PyValue): Map<PyValue, PyValue> {
    if (!(v instanceof Map)) {
      throw this.#fail("it sets an item on something that is not a dict");
    }
    return v;
  }

  #text(n: number): string {
    return this.#decode(this.#take(n));
  }

  #decode(raw: Uint8Array): string {
    try {
      return utf8.decode(raw);
    } catch {
      throw this.#fail("it has a string that is not valid UTF-8");
    }
  }

  #long(n: number): number | bigint {
    if (n > MAX_LONG_BYTES) {
      throw this.#fail(
        `it has a ${n}-byte integer (at most ${MAX_LONG_BYTES} are supported)`,
      );
    }
    const raw = this.#take(n);
    let v = 0n;
    for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(raw[i]!);
    if (n > 0 && (raw[n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n);
    return small(v);
  }

  /**
   * An INT or LONG text. Python reads it in base 0 or with strtol's base 0
   * ("010" is 8 for INT, an error for LONG), so only the forms that are
   * decimal in all of them are read: an optional sign, then 0s or a number
   * without a leading zero.
   */
  #parseInt(text: string): number | bigint {
    if (!/^[+-]?(?:0+|[1-9]\d{0,149})$/.test(text)) {
      throw this.#fail(
        `it has an INT or LONG that is not a plain decimal number: "${text.slice(0, 40)}"`,
      );
    }
    return small(BigInt(text));
  }

  #index(text: string): number {
    if (!/^\d{1,9}$/.test(text)) {
      throw this.#fail(
        `it has a memo index that is not a number: "${text.slice(0, 40)}"`,
      );
    }
    return Number(text);
  }

  /**
   * Protocol 0 UNICODE: Python's raw-unicode-escape. Each byte is the code
   * point of its value, except that a backslash followed by `u` (4 hex
   * digits) or `U` (8) is that code point; a backslash followed by anything
   * else is kept with the next character, so `\\u0041` stays 7 characters
   * (only an odd run of backslashes escapes). Python fails on a short or
   * non-hex escape and past U+10FFFF, and so do we. A surrogate escape is
   * refused: Python keeps `\ud83d\ude00` as two code points, distinct from
   * the key `😀`, but a JavaScript string would join them into it.
   */
  #rawUnicodeEscape(text: string): string {
    let out = "";
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      const e = text[i + 1];
      if (c !== "\\" || e === undefined) {
        out += c;
        continue;
      }
      if (e !== "u" && e !== "U") {
        out += c + e;
        i++;
        continue;
      }
      const n = e === "u" ? 4 : 8;
      const hex = text.slice(i + 2, i + 2 + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) {
        throw this.#fail(
          `it has a UNICODE string with a \\${e} escape that is not ${n} hex digits (Python fails on it)`,
        );
      }
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) {
        throw this.#fail(
          `it has a UNICODE string with an escape past U+10FFFF (Python fails on it)`,
        );
      }
      if (cp >= 0xd800 && cp <= 0xdfff) {
        throw this.#fail(
          `it has a UNICODE string with the surrogate escape \\${e}${hex}: Python keeps it as a lone surrogate, which a name cannot hold (two such escapes would read as one character here and two in Python)`,
        );
      }
      out += String.fromCodePoint(cp);
      i += 1 + n;
    }
    return out;
  }

  /**
   * Protocol 0 STRING: a quoted Python 2 str literal, unescaped as Python's
   * `codecs.escape_decode` does, one char a byte: `\\`, `\'`, `\"`, `\a`,
   * `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\x` and two hex digits, and one to
   * three octal digits (`\012` is a newline). Python fails on a bad `\x`
   * escape or a trailing backslash, and so do we. Octal escapes past `\377`
   * (Python keeps the low byte, with a warning) and escapes Python keeps as
   * written (with a warning, e.g. `\q`) are refused: `repr` never writes them.
   */
  #pyStringLiteral(text: string): string {
    const q = text[0];
    if (
      text.length < 2 || (q !== "'" && q !== '"') || text[text.length - 1] !== q
    ) {
      throw this.#fail("it has a STRING that is not quoted");
    }
    const body = text.slice(1, -1);
    const simple: Record<string, string> = {
      "\\": "\\",
      "'": "'",
      '"': '"',
      n: "\n",
      r: "\r",
      t: "\t",
      a: "\x07",
      b: "\b",
      f: "\f",
      v: "\v",
    };
    let out = "";
    for (let i = 0; i < body.length; i++) {
      const c = body[i]!;
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = body[i + 1];
      if (e === undefined) {
        throw this.#fail("it has a STRING that ends with a backslash (Python fails on it)");
      }
      if (e === "x") {
        const hex = body.slice(i + 2, i + 4);
        if (!/^[0-9a-fA-F]{2}$/.test(hex)) {
          throw this.#fail(
            "it has a STRING with a \\x escape that is not two hex digits (Python fails on it)",
          );
        }
        out += String.fromCharCode(parseInt(hex, 16));
        i += 3;
      } else if (e >= "0" && e <= "7") {
        const digits = /^[0-7]{1,3}/.exec(body.slice(i + 1, i + 4))![0];
        const v = parseInt(digits, 8);
        if (v > 0o377) {
          throw this.#fail(
            `it has a STRING with the octal escape \\${digits}, past \\377 (Python keeps its low byte)`,
          );
        }
        out += String.fromCharCode(v);
        i += digits.length;
      } else if (simple[e] !== undefined) {
        out += simple[e];
        i += 1;
      } else {
        throw this.#fail(
          `it has a STRING with the escape \\${
            JSON.stringify(e).slice(1, -1)
          }, which Python keeps as written with a warning`,
        );
      }
    }
    return out;
  }
}

function small(v: bigint): number | bigint {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) &&
      v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v)
    : v;
}

function bytesOf(latin1Text: string): Uint8Array {
  const out = new Uint8Array(latin1Text.length);
  for (let i = 0; i < out.length; i++) out[i] = latin1Text.charCodeAt(i);
  return out;
}

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    s += String.fromCharCode(
      ...bytes.subarray(i, Math.min(bytes.length, i + 8192)),
    );
  }
  return s;
}
