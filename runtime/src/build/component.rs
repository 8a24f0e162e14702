//! A core module for wasip1 made a component: weir's WIT embedded, the WASI reactor adapter
//! around it. Stock Go's module first gets the two allocators the component model needs
//! (`add_arena_allocators`); C brings its own.

use std::ops::Range;

use anyhow::Context as _;
use wasm_encoder::{Encode as _, Function, Instruction, MemArg, ValType};
use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};

/// The magic that starts the Go SDK's arena header (`sdk/go/internal/host/wasm.go`).
const MAGIC: &[u8; 16] = b"weir.go.arena.v1";
/// Offsets of the header's fields.
const BASE: u64 = 16;
const LOW: u64 = 32;
const HIGH: u64 = 40;

/// The component of a core module built for wasip1 that exports weir's `world`.
pub(super) fn componentize(core: &[u8], wit: &str, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut module = core.to_vec();
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve.push_str("processor.wit", wit)?;
    let world = resolve.select_world(&[package], Some(world))?;
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)?;
    wit_component::ComponentEncoder::default()
        .module(&module)?
        .validate(true)
        .adapter(
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .encode()
}

/// `core` with `cabi_realloc` and `cabi_realloc_adapter` added, in plain wasm over the Go SDK's
/// arena. The host calls them when Go cannot run: before its runtime starts (the adapter's
/// state), and while the host lowers a list (Go's allocator could start a collection there,
/// which the component model forbids).
pub(super) fn add_arena_allocators(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut header = None;
    let mut imported_functions = 0u32;
    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut defined = None;
    let mut types = None;
    for payload in Parser::new(0).parse_all(core) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    if matches!(import?.ty, TypeRef::Func(_)) {
                        imported_functions += 1;
                    }
                }
            }
            Payload::TypeSection(reader) => types = Some(reader.count()),
            Payload::FunctionSection(reader) => defined = Some(reader.count()),
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let name = export?.name;
                    if name == "cabi_realloc" || name == "cabi_realloc_adapter" {
                        anyhow::bail!("the module already exports `{name}`; weir's Go SDK brings its own");
                    }
                }
            }
            Payload::DataSection(reader) => {
                for data in reader.clone() {
                    let data = data?;
                    let DataKind::Active { offset_expr, .. } = data.kind else { continue };
                    let Ok(Operator::I32Const { value }) = offset_expr.get_operators_reader().read() else { continue };
                    if let Some(at) = data.data.windows(MAGIC.len()).position(|w| w == MAGIC) {
                        header = Some(value as u32 + at as u32);
                    }
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            sections.push((id, range.start as usize..range.end as usize));
        }
    }
    let header = header
        .context("the module has no weir arena: is it built with weir's Go SDK (github.com/weir-rs/weir/sdk/go)?")?;
    let first = imported_functions + defined.context("the module defines no functions")?;

    let mut out = core[..8].to_vec();
    for (id, range) in sections {
        let body = &core[range];
        let body = match id {
            // types: one more, (i32 i32 i32 i32) -> i32, as the last index
            1 => append(body, 1, &[0x60, 4, 0x7f, 0x7f, 0x7f, 0x7f, 1, 0x7f])?,
            3 => {
                let types = types.context("the module has no types")?;
                let mut entries = Vec::new();
                types.encode(&mut entries);
                types.encode(&mut entries);
                append(body, 2, &entries)?
            }
            7 => {
                let mut entries = Vec::new();
                for (i, name) in ["cabi_realloc", "cabi_realloc_adapter"].iter().enumerate() {
                    name.encode(&mut entries);
                    entries.push(0x00);
                    (first + i as u32).encode(&mut entries);
                }
                append(body, 2, &entries)?
            }
            10 => {
                let mut entries = Vec::new();
                bump_up(header).encode(&mut entries);
                bump_down(header).encode(&mut entries);
                append(body, 2, &entries)?
            }
            _ => body.to_vec(),
        };
        out.push(id);
        body.len().encode(&mut out);
        out.extend_from_slice(&body);
    }
    // The function section must come with its type: both exist in any Go module.
    Ok(out)
}

/// A vector section's element count and the length of its encoding.
fn count(body: &[u8]) -> anyhow::Result<(u32, usize)> {
    let mut reader = wasmparser::BinaryReader::new(body, 0);
    let n = reader.read_var_u32()?;
    Ok((n, reader.original_position() as usize))
}

/// A vector section with `more` entries (already encoded) after its own.
fn append(body: &[u8], more: u32, entries: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (n, at) = count(body)?;
    let mut out = Vec::with_capacity(body.len() + entries.len() + 5);
    (n + more).encode(&mut out);
    out.extend_from_slice(&body[at..]);
    out.extend_from_slice(entries);
    Ok(out)
}

fn field(offset: u64) -> MemArg {
    MemArg { offset, align: 2, memory_index: 0 }
}

/// A `realloc(old, old_len, align, len)` in plain wasm over the arena header at `h`. Locals: 4
/// the arena's base, 5 the new block, 6 its end.
struct Realloc {
    f: Function,
    h: i32,
}

impl Realloc {
    fn new(header: u32) -> Self {
        let mut r = Self { f: Function::new([(3, ValType::I32)]), h: header as i32 };
        r.field(BASE);
        r.ops(&[Instruction::LocalSet(4)]);
        r
    }

    fn ops(&mut self, ops: &[Instruction]) {
        for op in ops {
            self.f.instruction(op);
        }
    }

    /// Pushes the header's field at `offset`.
    fn field(&mut self, offset: u64) {
        self.ops(&[Instruction::I32Const(self.h), Instruction::I32Load(field(offset))]);
    }

    /// Pushes base + the header's field at `offset`.
    fn base_plus(&mut self, offset: u64) {
        self.ops(&[Instruction::LocalGet(4)]);
        self.field(offset);
        self.ops(&[Instruction::I32Add]);
    }

    /// Rounds the address on the stack down to `align` into local 5.
    fn align_down(&mut self) {
        use Instruction::*;
        self.ops(&[I32Const(0), LocalGet(2), I32Sub, I32And, LocalSet(5)]);
    }

    /// Traps when the condition on the stack holds: no room.
    fn trap_if(&mut self) {
        self.ops(&[Instruction::If(wasm_encoder::BlockType::Empty), Instruction::Unreachable, Instruction::End]);
    }

    /// Sets the header's field at `offset` to `local` - base.
    fn set(&mut self, offset: u64, local: u32) {
        use Instruction::*;
        self.ops(&[I32Const(self.h), LocalGet(local), LocalGet(4), I32Sub, I32Store(field(offset))]);
    }

    /// Copies the old block's bytes (at most the new length) into the new one, and returns it.
    fn finish(mut self) -> Function {
        use Instruction::*;
        self.ops(&[
            LocalGet(1),
            If(wasm_encoder::BlockType::Empty),
            LocalGet(5),
            LocalGet(0),
            LocalGet(1),
            LocalGet(3),
            LocalGet(1),
            LocalGet(3),
            I32LtU,
            Select,
            MemoryCopy { src_mem: 0, dst_mem: 0 },
            End,
            LocalGet(5),
            End,
        ]);
        self.f
    }
}

/// `cabi_realloc`: the next `len` bytes at `align` above `low`, below `high`; a trap when they
/// do not fit.
fn bump_up(header: u32) -> Function {
    use Instruction::*;
    let mut r = Realloc::new(header);
    r.base_plus(LOW); // (base + low + align - 1) & -align
    r.ops(&[LocalGet(2), I32Add, I32Const(1), I32Sub]);
    r.align_down();
    r.ops(&[LocalGet(5), LocalGet(3), I32Add, LocalSet(6)]);
    r.ops(&[LocalGet(6)]); // end > base + high, or it wrapped
    r.base_plus(HIGH);
    r.ops(&[I32GtU, LocalGet(6), LocalGet(5), I32LtU, I32Or]);
    r.trap_if();
    r.set(LOW, 6);
    r.finish()
}

/// `cabi_realloc_adapter`: `len` bytes at `align` below `high`, kept for good (the WASI
/// adapter's state); a trap when they would reach `low`.
fn bump_down(header: u32) -> Function {
    use Instruction::*;
    let mut r = Realloc::new(header);
    r.ops(&[LocalGet(3)]); // len > high
    r.field(HIGH);
    r.ops(&[I32GtU]);
    r.trap_if();
    r.base_plus(HIGH); // (base + high - len) & -align
    r.ops(&[LocalGet(3), I32Sub]);
    r.align_down();
    r.ops(&[LocalGet(5)]); // below base + low
    r.base_plus(LOW);
    r.ops(&[I32LtU]);
    r.trap_if();
    r.set(HIGH, 5);
    r.finish()
}
