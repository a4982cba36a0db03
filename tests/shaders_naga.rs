//! Every WGSL file in `shaders/`, assembled exactly as the runtime assembles it, parses and
//! validates with naga (CPU only, no adapter needed); every file is accounted for.
#![cfg(not(target_arch = "wasm32"))]

use flops_web::gpu::shaders::Kernel;

fn validate(name: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{name}: WGSL parse error:\n{}", e.emit_to_string(source)));
    naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: validation error:\n{}", e.emit_to_string(source)));
    module
}

#[test]
fn every_kernel_validates_with_naga() {
    for kernel in Kernel::ALL {
        let module = validate(kernel.file_name(), &kernel.source());
        let entries: Vec<&str> = module.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(entries, kernel.entry_points(), "{}: entry points", kernel.file_name());
        let overrides: Vec<&str> = module.overrides.iter().filter_map(|(_, o)| o.name.as_deref()).collect();
        assert_eq!(
            overrides,
            kernel.overrides(),
            "{}: override constants",
            kernel.file_name()
        );
    }
}

#[test]
fn every_shader_file_is_a_kernel_or_a_snippet() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut known: Vec<String> = Kernel::ALL.iter().map(|k| k.file_name().to_string()).collect();
    known.extend(Kernel::SNIPPETS.iter().map(|s| s.to_string()));
    known.sort();
    assert_eq!(files, known, "shaders/ and Kernel::ALL + Kernel::SNIPPETS disagree");
}

#[test]
fn snippets_are_not_standalone_kernels() {
    // The snippets alone parse (they declare no entry points).
    for snippet in Kernel::SNIPPETS {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("shaders")
            .join(snippet);
        let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let full = if snippet == "perturb.wgsl" {
            let rng = std::fs::read_to_string(path.with_file_name("rng.wgsl")).expect("rng.wgsl");
            format!("{rng}\n{src}")
        } else {
            src
        };
        let module = validate(snippet, &full);
        assert!(
            module.entry_points.is_empty(),
            "{snippet} must not declare entry points"
        );
    }
}
