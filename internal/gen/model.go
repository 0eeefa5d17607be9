package gen

import (
	"fmt"
	"go/token"
	"path/filepath"
	"runtime"
	"strings"

	"modernc.org/cc/v4"
)

// kind is how a C value travels.
type kind int

const (
	kSigned   kind = iota + 1 // int64 in Go, a CBOR integer
	kUnsigned                 // uint64
	kFloat                    // float64
	kVoid
	kStruct // a struct result, by value (fn.retSt)
	kString // a char pointer result: a NUL-terminated string, as CBOR text
)

// ctype is a C scalar type: its spelling and how it travels.
type ctype struct {
	C    string // spelling for a declaration: "uLong", "unsigned long"
	kind kind
	size int // bytes
}

// goType is the Go type of the same size and signedness.
func (t ctype) goType() string {
	bits := fmt.Sprint(8 * t.size)
	switch t.kind {
	case kSigned:
		return "int" + bits
	case kUnsigned:
		return "uint" + bits
	case kFloat:
		return "float" + bits
	case kString:
		return "string"
	}
	return ""
}

// role is what a parameter is, given its type and annotation.
type role int

const (
	rScalar    role = iota + 1 // an argument
	rLen                       // set from an "in" buffer's length
	rInBytes                   // a []byte argument
	rInString                  // a string argument, NUL-terminated
	rOutBytes                  // a []byte result
	rScalarPtr                 // a pointer to a local scalar ("out"/"inout")
	rNull                      // NULL
	rLocal                     // a pointer made by init, let go by free
	rStruct                    // a pointer to a local struct of scalars, copied in, out or both
	rHandle                    // the object's handle (HandleSpec), never seen outside the worker
	rOutAlloc                  // a pointer to a buffer the library allocates: a []byte result, freed after
)

// param is one C parameter.
type param struct {
	name string
	typ  ctype // the scalar, or a pointer's element for rScalarPtr
	role role
	ann  ParamSpec
	// lenOf is the buffer whose length sets an rLen parameter.
	lenOf string
	// st is an rStruct's struct type.
	st *cstruct
	// byValue: an rStruct passed by value, which is "in".
	byValue bool
}

// cstruct is a C struct whose fields are scalars or structs of the same
// kind, travelling as a CBOR array of its fields in order, a nested one as
// a nested array (a Go struct with toarray).
type cstruct struct {
	C      string // "struct mini_point", or its typedef name
	goName string
	fields []cfield
}

type cfield struct {
	name string
	typ  ctype    // a scalar field's type
	st   *cstruct // a nested struct's, or nil
}

// goType is the field's Go type.
func (f cfield) goType() string {
	if f.st != nil {
		return f.st.goName
	}
	return f.typ.goType()
}

// fn is one exposed function, ready to emit.
type fn struct {
	spec   FuncSpec
	proto  string   // the C prototype, for comments
	result ctype    // kVoid for void
	retSt  *cstruct // a struct result's type (result.kind kStruct)
	params []param
	// ctor is the class a constructor makes (its result is the handle);
	// recv the class of a method (one parameter is the handle). Both nil
	// for a plain function.
	ctor, recv *HandleSpec
}

// argBase is the index of the first argument: a constructor's ACTIVATE
// arguments start with its name.
func (f *fn) argBase() int {
	if f.ctor != nil {
		return 1
	}
	return 0
}

// goArg is one argument of the Go function and of the CALL, in order.
type goArg struct {
	name   string // the C name it binds
	goType string
	param  *param // nil for an extra Args entry
}

// goArgs lists the CALL's arguments: the parameters that are arguments, in
// C order, then the extra Args.
func (f *fn) goArgs() []goArg {
	var out []goArg
	for i := range f.params {
		p := &f.params[i]
		switch {
		case p.role == rScalar || (p.role == rLen && f.spec.Unchecked):
			out = append(out, goArg{p.name, p.typ.goType(), p})
		case p.role == rInBytes:
			out = append(out, goArg{p.name, "[]byte", p})
		case p.role == rInString:
			out = append(out, goArg{p.name, "string", p})
		case p.role == rStruct && p.ann.Dir != "out":
			out = append(out, goArg{p.name, p.st.goName, p})
		}
	}
	for _, a := range f.spec.Args {
		out = append(out, goArg{name: a, goType: "uint64"})
	}
	return out
}

// output is one result of the REPLY.
type output struct {
	name   string // "ret" or the C parameter
	goType string
	param  *param // nil for the return value
}

func (f *fn) outputs() []output {
	var out []output
	if f.retSt != nil {
		out = append(out, output{"ret", f.retSt.goName, nil})
	} else if f.result.kind != kVoid && f.spec.Status == "" && f.ctor == nil {
		out = append(out, output{"ret", f.result.goType(), nil})
	}
	for i := range f.params {
		p := &f.params[i]
		switch {
		case p.role == rOutBytes || p.role == rOutAlloc:
			out = append(out, output{p.name, "[]byte", p})
		case p.role == rScalarPtr && p.ann.Result:
			out = append(out, output{p.name, p.typ.goType(), p})
		case p.role == rStruct && p.ann.Dir != "in":
			out = append(out, output{p.name, p.st.goName, p})
		}
	}
	return out
}

// Load parses the spec's header with cc and resolves every function.
func Load(s *Spec) ([]fn, error) {
	cfg, err := cc.NewConfig(runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return nil, fmt.Errorf("gen: configuring the C parser: %w", err)
	}
	cfg.IncludePaths = append(append([]string(nil), s.Include...), cfg.IncludePaths...)
	cfg.SysIncludePaths = append(append([]string(nil), s.Include...), cfg.SysIncludePaths...)
	include := s.includes()
	ast, err := cc.Translate(cfg, []cc.Source{
		{Name: "<predefined>", Value: cfg.Predefined},
		{Name: "<builtin>", Value: cc.Builtin},
		{Name: "<gen>", Value: include},
	})
	if err != nil {
		return nil, fmt.Errorf("gen: parsing %s: %w", s.Header, err)
	}
	for i := range s.Handles {
		h := &s.Handles[i]
		err := resolveHandle(ast, h)
		if err == nil {
			err = checkFree(ast, h)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: handle[%d] (%s): %w", s.file, i, h.Type, err)
		}
	}
	var fns []fn
	for i, fs := range s.Funcs {
		f, err := resolve(ast, fs, s.Handles)
		if err != nil {
			return nil, fmt.Errorf("%s: func[%d] (%s): %w", s.file, i, fs.Name, err)
		}
		fns = append(fns, f)
	}
	for i := range s.Handles {
		if !hasCtor(fns, &s.Handles[i]) {
			return nil, fmt.Errorf("%s: handle[%d] (%s): %w: no func returns it, so no object of class %s can be made",
				s.file, i, s.Handles[i].Type, ErrSpec, s.Handles[i].Class)
		}
	}
	return fns, nil
}

// checkFree checks that h's free function takes the handle alone.
func checkFree(ast *cc.AST, h *HandleSpec) error {
	ft, err := lookup(ast, h.Free)
	if err != nil {
		return err
	}
	ps := ft.Parameters()
	if len(ps) != 1 || handleOf(ps[0].Type(), []HandleSpec{*h}) == nil {
		return fmt.Errorf("%w: free: %s must take one parameter of type %s", ErrSpec, h.Free, h.Type)
	}
	return nil
}

func hasCtor(fns []fn, h *HandleSpec) bool {
	for _, f := range fns {
		if f.ctor == h {
			return true
		}
	}
	return false
}

// handleOf is the handle spec whose type t is, or nil: by its spelling, or
// as a pointer to the same type (xmlDocPtr and const xmlDoc *).
func handleOf(t cc.Type, hs []HandleSpec) *HandleSpec {
	name, c := typeString(t), canon(t)
	for i := range hs {
		if hs[i].Type == name || (hs[i].canon != "" && hs[i].canon == c) {
			return &hs[i]
		}
	}
	return nil
}

// canon spells a type through its typedefs and without qualifiers, so that
// two spellings of one pointer type compare equal.
func canon(t cc.Type) string {
	switch x := t.(type) {
	case *cc.PointerType:
		return canon(x.Elem()) + "*"
	case *cc.StructType:
		if tag := x.Tag(); tag.SrcStr() != "" {
			return "struct " + tag.SrcStr()
		}
	}
	return typeString(t)
}

// resolveHandle finds h's typedef in the header: a pointer type.
func resolveHandle(ast *cc.AST, h *HandleSpec) error {
	for _, n := range ast.Scope.Nodes[h.Type] {
		if d, ok := n.(*cc.Declarator); ok && d.IsTypename() {
			if _, ok := d.Type().(*cc.PointerType); !ok {
				return fmt.Errorf("%w: %s is not a pointer type", ErrSpec, h.Type)
			}
			h.canon = canon(d.Type())
			return nil
		}
	}
	return fmt.Errorf("%w: no type %s in the header", ErrSpec, h.Type)
}

// lookup finds the declaration of a function in the file scope.
func lookup(ast *cc.AST, name string) (*cc.FunctionType, error) {
	for _, n := range ast.Scope.Nodes[name] {
		if d, ok := n.(*cc.Declarator); ok {
			if ft, ok := d.Type().(*cc.FunctionType); ok {
				return ft, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: no function %s in the header", ErrSpec, name)
}

func resolve(ast *cc.AST, fs FuncSpec, hs []HandleSpec) (fn, error) {
	ft, err := lookup(ast, fs.Name)
	if err != nil {
		return fn{}, err
	}
	if ft.IsVariadic() {
		return fn{}, fmt.Errorf("%w: %s is variadic", ErrSpec, fs.Name)
	}
	f := fn{spec: fs}
	if f.ctor = handleOf(ft.Result(), hs); f.ctor != nil {
		f.result = ctype{C: f.ctor.Type}
		if fs.Status != "" {
			return fn{}, fmt.Errorf("%w: status on a constructor of %s (a NULL result is its failure)", ErrSpec, f.ctor.Class)
		}
	} else if st, ok := ft.Result().(*cc.StructType); ok {
		if f.retSt, err = structOf(st); err != nil {
			return fn{}, fmt.Errorf("result: %w", err)
		}
		f.result = ctype{C: f.retSt.C, kind: kStruct}
		if fs.Status != "" {
			return fn{}, fmt.Errorf("%w: status on a function that returns a struct", ErrSpec)
		}
	} else if isCharPtr(ft.Result()) {
		// zlibVersion, XML_ErrorString, sqlite3_errmsg: a string the
		// library owns (or that result_free lets go). NULL is its failure.
		f.result = ctype{C: typeString(ft.Result()), kind: kString, size: 8}
		if fs.Status != "" {
			return fn{}, fmt.Errorf("%w: status on a function that returns a string (a NULL result is its failure)", ErrSpec)
		}
	} else if f.result, err = scalar(ft.Result()); err != nil {
		return fn{}, fmt.Errorf("%w: result: %v", ErrSpec, err)
	}
	if fs.ResultFree != "" && f.result.kind != kString {
		return fn{}, fmt.Errorf("%w: result_free on a function that does not return a string", ErrSpec)
	}
	if fs.Status != "" && f.result.kind == kVoid {
		return fn{}, fmt.Errorf("%w: status on a void function", ErrSpec)
	}
	var names []string
	for i, p := range ft.Parameters() {
		if p.Type().Kind() == cc.Void {
			break // f(void)
		}
		name := p.Name()
		if name == "" {
			name = fmt.Sprintf("p%d", i)
		}
		var pp param
		if h := handleOf(p.Type(), hs); h != nil {
			pp, err = param{name: name, typ: ctype{C: h.Type}, role: rHandle}, f.receiver(name, h)
		} else {
			pp, err = classify(name, p.Type(), fs)
		}
		if err != nil {
			return fn{}, fmt.Errorf("parameter %s: %w", name, err)
		}
		f.params = append(f.params, pp)
		names = append(names, strings.Replace(typeString(p.Type())+" "+name, "* ", " *", 1))
	}
	f.proto = fmt.Sprintf("%s %s(%s)", f.result.C, fs.Name, strings.Join(names, ", "))
	for name := range fs.Params {
		if !f.has(name) {
			return fn{}, fmt.Errorf("%w: params.%s: %s has no such parameter", ErrSpec, name, fs.Name)
		}
	}
	return f, f.link()
}

// receiver makes f a method of h's class, through its parameter name.
func (f *fn) receiver(name string, h *HandleSpec) error {
	switch {
	case f.spec.Params[name] != (ParamSpec{}):
		return fmt.Errorf("%w: a handle (%s) takes no annotation: it is the object's", ErrSpec, h.Type)
	case f.ctor != nil:
		return fmt.Errorf("%w: %s takes a %s and returns a %s: only functions that take no handle make objects",
			ErrSpec, f.spec.Name, h.Type, f.ctor.Type)
	case f.recv != nil:
		return fmt.Errorf("%w: %s takes two handles; a method has one object", ErrSpec, f.spec.Name)
	}
	f.recv = h
	return nil
}

func (f *fn) has(name string) bool {
	for _, p := range f.params {
		if p.name == name {
			return true
		}
	}
	return false
}

// link marks the length parameters of "in" buffers, and checks that every
// pointer has an annotation and every name a target.
func (f *fn) link() error {
	for i := range f.params {
		p := &f.params[i]
		if p.role != rInBytes || p.ann.Len == "" || constRE.MatchString(p.ann.Len) {
			continue
		}
		j := f.index(p.ann.Len)
		if j < 0 || f.params[j].role != rScalar || f.params[j].typ.kind == kFloat {
			return fmt.Errorf("%w: params.%s.len: %q is not an integer parameter", ErrSpec, p.name, p.ann.Len)
		}
		f.params[j].role, f.params[j].lenOf = rLen, p.name
	}
	for _, a := range f.spec.Args {
		if f.has(a) {
			return fmt.Errorf("%w: args: %q is also a parameter", ErrSpec, a)
		}
	}
	return nil
}

func (f *fn) index(name string) int {
	for i, p := range f.params {
		if p.name == name {
			return i
		}
	}
	return -1
}

// classify gives a parameter its role from its type and annotation.
func classify(name string, t cc.Type, fs FuncSpec) (param, error) {
	ann, annotated := fs.Params[name]
	if token.IsKeyword(name) || name == "ret" || strings.HasPrefix(name, "bh_") {
		return param{}, fmt.Errorf("%w: the name %q is reserved by the generator", ErrSpec, name)
	}
	pt, isPtr := t.(*cc.PointerType)
	if sct, ok := t.(*cc.StructType); ok { // by value: in
		if annotated {
			return param{}, fmt.Errorf("%w: a struct passed by value is \"in\" and takes no annotation", ErrSpec)
		}
		cs, err := structOf(sct)
		if err != nil {
			return param{}, err
		}
		return param{name: name, role: rStruct, st: cs, byValue: true, ann: ParamSpec{Dir: "in"}}, nil
	}
	if !isPtr {
		st, err := scalar(t)
		if err != nil || st.kind == kVoid {
			return param{}, fmt.Errorf("%w: type %s is not supported (scalars and pointers only)", ErrSpec, typeString(t))
		}
		if annotated {
			return param{}, fmt.Errorf("%w: only pointers take an annotation", ErrSpec)
		}
		return param{name: name, typ: st, role: rScalar}, nil
	}
	if !annotated {
		return param{}, fmt.Errorf("%w: pointer of type %s needs an annotation (params.%s)", ErrSpec, typeString(t), name)
	}
	p := param{name: name, ann: ann}
	switch ann.Dir {
	case "null":
		p.role = rNull
		return p, nil
	case "local":
		p.role, p.typ = rLocal, ctype{C: typeString(t)}
		return p, nil
	}
	elem := pt.Elem()
	if pp, ok := elem.(*cc.PointerType); ok && isBytes(pp.Elem()) && ann.Dir == "out" { // the library's buffer
		if ann.Len == "" {
			return param{}, fmt.Errorf("%w: a buffer the library allocates needs len, a C expression for its bytes", ErrSpec)
		}
		p.role, p.typ = rOutAlloc, ctype{C: typeString(elem)}
		return p, nil
	}
	if isBytes(elem) { // a byte buffer
		switch {
		case ann.Dir == "in" && ann.String:
			p.role = rInString
		case ann.Dir == "in":
			p.role = rInBytes
		case ann.Dir == "out" && ann.Cap != "":
			p.role = rOutBytes
		default:
			return param{}, fmt.Errorf("%w: a %s byte buffer needs cap (out) or is in", ErrSpec, ann.Dir)
		}
		p.typ = ctype{C: typeString(elem), kind: kUnsigned, size: 1}
		return p, nil
	}
	if sct, ok := elem.(*cc.StructType); ok {
		cs, err := structOf(sct)
		if err != nil {
			return param{}, err
		}
		p.role, p.st = rStruct, cs
		return p, nil
	}
	st, err := scalar(elem)
	if err != nil || st.kind == kVoid || ann.Dir == "in" {
		return param{}, fmt.Errorf("%w: pointer to %s: only byte buffers, structs of scalars and out/inout scalars are supported",
			ErrSpec, typeString(elem))
	}
	p.typ, p.role = st, rScalarPtr
	return p, nil
}

// isBytes reports whether a pointer to t is a byte buffer: t is a 1-byte
// integer type or void.
func isBytes(t cc.Type) bool { return (t.Size() == 1 && cc.IsIntegerType(t)) || t.Kind() == cc.Void }

// isCharPtr reports whether t is a pointer to a character type (char,
// signed or unsigned char, const or not): a string when it is a result.
func isCharPtr(t cc.Type) bool {
	p, ok := t.(*cc.PointerType)
	return ok && p.Elem().Kind() != cc.Void && p.Elem().Size() == 1 && cc.IsIntegerType(p.Elem())
}

// scalar classifies an arithmetic or void type.
func scalar(t cc.Type) (ctype, error) {
	s := typeString(t)
	switch {
	case t.Kind() == cc.Void:
		return ctype{C: "void", kind: kVoid}, nil
	case t.Kind() == cc.Float || t.Kind() == cc.Double:
		return ctype{C: s, kind: kFloat, size: int(t.Size())}, nil
	case cc.IsIntegerType(t) && t.Size() <= 8 && cc.IsSignedInteger(t):
		return ctype{C: s, kind: kSigned, size: int(t.Size())}, nil
	case cc.IsIntegerType(t) && t.Size() <= 8:
		return ctype{C: s, kind: kUnsigned, size: int(t.Size())}, nil
	}
	return ctype{}, fmt.Errorf("type %s is not supported", s)
}

// typeString spells a type: its typedef name when it has one.
func typeString(t cc.Type) string {
	if td := t.Typedef(); td != nil {
		return td.Name()
	}
	if p, ok := t.(*cc.PointerType); ok {
		return typeString(p.Elem()) + "*"
	}
	if st, ok := t.(*cc.StructType); ok {
		if tag := st.Tag(); tag.SrcStr() != "" {
			return "struct " + tag.SrcStr()
		}
	}
	if e, ok := t.(*cc.EnumType); ok {
		// "enum" alone declares nothing: a named enum is spelled with
		// its tag; an anonymous one has int's values.
		tag := e.Tag()
		if name := tag.SrcStr(); name != "" {
			return "enum " + name
		}
		return "int"
	}
	return t.Kind().String()
}

// includes is the #include lines of the spec's headers, Before first.
func (s *Spec) includes() string {
	var b strings.Builder
	for _, h := range append(append([]string(nil), s.Before...), s.Header) {
		if filepath.IsAbs(h) {
			fmt.Fprintf(&b, "#include %q\n", h)
		} else {
			fmt.Fprintf(&b, "#include <%s>\n", h)
		}
	}
	return b.String()
}

// structOf describes a struct whose fields are scalars or such structs.
func structOf(t *cc.StructType) (*cstruct, error) { return structDepth(t, 0) }

// maxStructDepth bounds nesting, as a C compiler would not, so that the
// generated decoder's depth is known.
const maxStructDepth = 8

func structDepth(t *cc.StructType, depth int) (*cstruct, error) {
	c, tag := typeString(t), t.Tag()
	if t.Typedef() == nil {
		c = "struct " + tag.SrcStr()
	}
	if tag.SrcStr() == "" && t.Typedef() == nil {
		return nil, fmt.Errorf("%w: an anonymous struct has no name to declare it by", ErrSpec)
	}
	if depth == maxStructDepth {
		return nil, fmt.Errorf("%w: %s: structs nested deeper than %d", ErrSpec, c, maxStructDepth)
	}
	cs := &cstruct{C: c, goName: camel(strings.TrimPrefix(c, "struct "))}
	for i := range t.NumFields() {
		f := t.FieldByIndex(i)
		if nested, ok := f.Type().(*cc.StructType); ok && f.Name() != "" {
			ns, err := structDepth(nested, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: field %s: %w", c, f.Name(), err)
			}
			cs.fields = append(cs.fields, cfield{name: f.Name(), st: ns})
			continue
		}
		ft, err := scalar(f.Type())
		if err != nil || ft.kind == kVoid || f.IsBitfield() || f.Name() == "" {
			return nil, fmt.Errorf("%w: %s: field %q is not a named scalar or struct (pointers, arrays and unions do not travel)", ErrSpec, c, f.Name())
		}
		cs.fields = append(cs.fields, cfield{name: f.Name(), typ: ft})
	}
	if len(cs.fields) == 0 {
		return nil, fmt.Errorf("%w: %s has no fields", ErrSpec, c)
	}
	return cs, nil
}

// camel turns a C snake_case name into a Go type name: mini_point, MiniPoint.
func camel(c string) string {
	var b strings.Builder
	for _, part := range strings.Split(c, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	if b.Len() == 0 {
		return "Struct"
	}
	return b.String()
}
