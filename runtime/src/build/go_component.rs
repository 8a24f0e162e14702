//! Stock Go to a component: the core module `go build -buildmode=c-shared` makes for wasip1,
//! given the two allocators the component model needs, weir's WIT, and the WASI adapter.

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

/// The component of a Go processor's core module.
pub fn componentize(core: &[u8], wit: &str, world: &str) -> anyhow::Result<Vec<u8>> {
    let mut module = add_allocators(core)?;
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
fn add_allocators(core: &[u8]) -> anyhow::Result<Vec<u8>> {
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

/// `cabi_realloc(old, old_len, align, len)`: the next `len` bytes at `align` above `low`, below
/// `high`; a trap when they do not fit. Locals: 4 base, 5 the new block, 6 its end.
fn bump_up(header: u32) -> Function {
    use Instruction::*;
    let h = header as i32;
    let mut f = Function::new([(3, ValType::I32)]);
    for i in [
        I32Const(h),
        I32Load(field(BASE)),
        LocalSet(4),
        // p = (base + low + align - 1) & -align
        LocalGet(4),
        I32Const(h),
        I32Load(field(LOW)),
        I32Add,
        LocalGet(2),
        I32Add,
        I32Const(1),
        I32Sub,
        I32Const(0),
        LocalGet(2),
        I32Sub,
        I32And,
        LocalSet(5),
        LocalGet(5),
        LocalGet(3),
        I32Add,
        LocalSet(6),
        // end > base + high, or it wrapped: no room
        LocalGet(6),
        LocalGet(4),
        I32Const(h),
        I32Load(field(HIGH)),
        I32Add,
        I32GtU,
        LocalGet(6),
        LocalGet(5),
        I32LtU,
        I32Or,
        If(wasm_encoder::BlockType::Empty),
        Unreachable,
        End,
        I32Const(h),
        LocalGet(6),
        LocalGet(4),
        I32Sub,
        I32Store(field(LOW)),
    ] {
        f.instruction(&i);
    }
    copy_old(&mut f);
    f
}

/// `cabi_realloc_adapter(old, old_len, align, len)`: `len` bytes at `align` below `high`, kept
/// for good (the WASI adapter's state); a trap when they would reach `low`.
fn bump_down(header: u32) -> Function {
    use Instruction::*;
    let h = header as i32;
    let mut f = Function::new([(3, ValType::I32)]);
    for i in [
        // len > high: no room
        LocalGet(3),
        I32Const(h),
        I32Load(field(HIGH)),
        I32GtU,
        If(wasm_encoder::BlockType::Empty),
        Unreachable,
        End,
        I32Const(h),
        I32Load(field(BASE)),
        LocalSet(4),
        // p = (base + high - len) & -align
        LocalGet(4),
        I32Const(h),
        I32Load(field(HIGH)),
        I32Add,
        LocalGet(3),
        I32Sub,
        I32Const(0),
        LocalGet(2),
        I32Sub,
        I32And,
        LocalSet(5),
        // p < base + low: no room
        LocalGet(5),
        LocalGet(4),
        I32Const(h),
        I32Load(field(LOW)),
        I32Add,
        I32LtU,
        If(wasm_encoder::BlockType::Empty),
        Unreachable,
        End,
        I32Const(h),
        LocalGet(5),
        LocalGet(4),
        I32Sub,
        I32Store(field(HIGH)),
    ] {
        f.instruction(&i);
    }
    copy_old(&mut f);
    f
}

/// Copies the old block's bytes (at most the new length) into the new one, then returns it.
fn copy_old(f: &mut Function) {
    use Instruction::*;
    for i in [
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
    ] {
        f.instruction(&i);
    }
}
