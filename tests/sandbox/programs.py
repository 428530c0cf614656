"""Programs per language for the language and judge tests and bench/languages.py: hello
world, echo of stdin, a compile error, a runtime error, an endless loop, a memory hog, a
flood of output, and a program that reads ``in.txt`` and writes ``out.txt``.

Each entry is the source (``None``: the language has no such program, e.g. no compile
error in an interpreted language)."""

from __future__ import annotations

HELLO = {
    "c": '#include <stdio.h>\nint main(void) { printf("hello\\n"); return 0; }\n',
    "cpp": '#include <bits/stdc++.h>\nint main() { std::cout << "hello" << std::endl; }\n',
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    '    System.out.println("hello");\n  }\n}\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hello")\n}\n',
    "rust": 'fn main() {\n    println!("hello");\n}\n',
    "nodejs": 'console.log("hello");\n',
    "typescript": 'const greeting: string = "hello";\nconsole.log(greeting);\n',
    "php": '<?php\necho "hello\\n";\n',
    "ruby": 'puts "hello"\n',
    "lua": 'print("hello")\n',
    "perl": 'print "hello\\n";\n',
    "R": 'cat("hello\\n")\n',
    "csharp": "using System;\nclass Program {\n  static void Main() {\n"
    '    Console.WriteLine("hello");\n  }\n}\n',
    "scala": 'object Main {\n  def main(args: Array[String]): Unit = println("hello")\n}\n',
    "racket": '#lang racket\n(displayln "hello")\n',
    "verilog": 'module main;\n  initial begin\n    $display("hello");\n    $finish;\n  end\n'
    "endmodule\n",
}

# stdin: two integers on a line -> their sum
SUM = {
    "c": '#include <stdio.h>\nint main(void) { long long a, b; scanf("%lld %lld", &a, &b);\n'
    '  printf("%lld\\n", a + b); return 0; }\n',
    "cpp": "#include <bits/stdc++.h>\nint main() { long long a, b; std::cin >> a >> b;\n"
    '  std::cout << a + b << "\\n"; }\n',
    "java": "import java.util.*;\npublic class Main {\n  public static void main(String[] x) {\n"
    "    Scanner s = new Scanner(System.in);\n"
    "    System.out.println(s.nextLong() + s.nextLong());\n  }\n}\n",
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tvar a, b int64\n'
    "\tfmt.Scan(&a, &b)\n\tfmt.Println(a + b)\n}\n",
    "rust": "use std::io::Read;\nfn main() {\n    let mut s = String::new();\n"
    "    std::io::stdin().read_to_string(&mut s).unwrap();\n"
    "    let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();\n"
    '    println!("{}", v[0] + v[1]);\n}\n',
    "nodejs": 'const s = require("fs").readFileSync(0, "utf8").trim().split(/\\s+/).map(BigInt);\n'
    "console.log(String(s[0] + s[1]));\n",
    "typescript": 'declare var require: any;\nconst s: string[] = require("fs").readFileSync(0, '
    '"utf8").trim().split(/\\s+/);\nconsole.log(String(BigInt(s[0]) + BigInt(s[1])));\n',
    "php": "<?php\n[$a, $b] = array_map('intval', preg_split('/\\s+/', trim(stream_get_contents"
    '(STDIN))));\necho ($a + $b) . "\\n";\n',
    "ruby": "a, b = STDIN.read.split.map(&:to_i)\nputs a + b\n",
    "lua": 'local a, b = io.read("n", "n")\nprint(math.tointeger(a + b))\n',
    "perl": "my @v = split ' ', join('', <STDIN>);\nprint $v[0] + $v[1], \"\\n\";\n",
    "R": 'v <- scan(file("stdin"), what = numeric(), quiet = TRUE)\ncat(format(v[1] + v[2], '
    'scientific = FALSE), "\\n", sep = "")\n',
    "csharp": "using System;\nclass Program {\n  static void Main() {\n"
    "    var p = Console.In.ReadToEnd().Split((char[])null, "
    "StringSplitOptions.RemoveEmptyEntries);\n"
    "    Console.WriteLine(long.Parse(p[0]) + long.Parse(p[1]));\n  }\n}\n",
    "scala": "object Main {\n  def main(args: Array[String]): Unit = {\n"
    '    val v = scala.io.Source.stdin.mkString.trim.split("\\\\s+").map(_.toLong)\n'
    "    println(v(0) + v(1))\n  }\n}\n",
    "racket": "#lang racket\n(displayln (+ (read) (read)))\n",
    "verilog": "module main;\n  integer a, b, r;\n  initial begin\n"
    '    r = $fscanf(32\'h8000_0000, "%d %d", a, b);\n    $display("%0d", a + b);\n'
    "    $finish;\n  end\nendmodule\n",
}

COMPILE_ERROR = {
    "c": "int main(void) {\n  return missing;\n}\n",
    "cpp": "int main() {\n  return missing;\n}\n",
    "java": "public class Main {\n  public static void main(String[] a) {\n    int x = missing;\n"
    "  }\n}\n",
    "go": "package main\n\nfunc main() {\n\tx := missing\n}\n",
    "rust": "fn main() {\n    let x: i32 = missing;\n}\n",
    "csharp": "class Program {\n  static void Main() {\n    int x = missing;\n  }\n}\n",
    "scala": "object Main {\n  def main(a: Array[String]): Unit = {\n    val x: Int = missing\n"
    "  }\n}\n",
    "verilog": "module main;\n  initial begin\n    x = ;\n  end\nendmodule\n",
}

# exit with status 3 after printing to stderr
RUNTIME_ERROR = {
    "c": '#include <stdio.h>\n#include <stdlib.h>\nint main(void) { fprintf(stderr, "boom\\n");'
    " exit(3); }\n",
    "cpp": '#include <bits/stdc++.h>\nint main() { std::cerr << "boom\\n"; return 3; }\n',
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    '    System.err.println("boom");\n    System.exit(3);\n  }\n}\n',
    "go": 'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n'
    '\tfmt.Fprintln(os.Stderr, "boom")\n\tos.Exit(3)\n}\n',
    "rust": 'fn main() {\n    eprintln!("boom");\n    std::process::exit(3);\n}\n',
    "nodejs": 'console.error("boom");\nprocess.exit(3);\n',
    "typescript": 'declare var process: any;\nconsole.error("boom");\nprocess.exit(3);\n',
    "php": '<?php\nfwrite(STDERR, "boom\\n");\nexit(3);\n',
    "ruby": 'STDERR.puts "boom"\nexit 3\n',
    "lua": 'io.stderr:write("boom\\n")\nos.exit(3)\n',
    "perl": 'print STDERR "boom\\n";\nexit 3;\n',
    "R": 'message("boom")\nquit(status = 3)\n',
    "csharp": "using System;\nclass Program {\n  static int Main() {\n"
    '    Console.Error.WriteLine("boom");\n    return 3;\n  }\n}\n',
    "scala": "object Main {\n  def main(a: Array[String]): Unit = {\n"
    '    System.err.println("boom")\n    sys.exit(3)\n  }\n}\n',
    "racket": '#lang racket\n(eprintf "boom\\n")\n(exit 3)\n',
    "verilog": 'module main;\n  initial begin\n    $display("boom");\n    $fatal(1);\n  end\n'
    "endmodule\n",
}

LOOP = {
    "c": "int main(void) { volatile unsigned long i = 0; for (;;) i++; }\n",
    "cpp": "int main() { volatile unsigned long i = 0; for (;;) i++; }\n",
    "java": "public class Main {\n  public static void main(String[] a) {\n    long i = 0;\n"
    "    while (true) { i++; if (i == -1) break; }\n  }\n}\n",
    "go": "package main\n\nfunc main() {\n\ti := 0\n\tfor {\n\t\ti++\n\t}\n}\n",
    "rust": "fn main() {\n    let mut i: u64 = 0;\n    loop {\n        i = i.wrapping_add(1);\n"
    '        if i == u64::MAX {\n            println!("{}", i);\n        }\n    }\n}\n',
    "nodejs": "for (;;) {}\n",
    "typescript": "let i: number = 0;\nfor (;;) { i++; }\n",
    "php": "<?php\nwhile (true) {}\n",
    "ruby": "loop {}\n",
    "lua": "while true do end\n",
    "perl": "1 while 1;\n",
    "R": "repeat {}\n",
    "csharp": "class Program {\n  static void Main() {\n    long i = 0;\n"
    "    while (true) { i++; }\n  }\n}\n",
    "scala": "object Main {\n  def main(a: Array[String]): Unit = {\n    var i = 0L\n"
    "    while (true) { i += 1 }\n  }\n}\n",
    "racket": "#lang racket\n(let loop () (loop))\n",
    "verilog": "module main;\n  reg c;\n  initial c = 0;\n  always #1 c = ~c;\nendmodule\n",
}

# allocate and touch ~2 GiB (past every test's limit)
MEMORY = {
    "c": "#include <stdlib.h>\n#include <string.h>\nint main(void) {\n"
    "  for (int i = 0; i < 64; i++) { char *p = malloc(32 << 20); if (!p) return 1;"
    " memset(p, 1, 32 << 20); }\n  return 0;\n}\n",
    "cpp": "#include <bits/stdc++.h>\nint main() {\n  std::vector<std::vector<char>> v;\n"
    "  for (int i = 0; i < 64; i++) v.emplace_back(32 << 20, 1);\n"
    "  std::cout << v.size() << std::endl;\n}\n",
    "java": "import java.util.*;\npublic class Main {\n  public static void main(String[] a) {\n"
    "    List<byte[]> v = new ArrayList<>();\n"
    "    for (int i = 0; i < 64; i++) v.add(new byte[32 << 20]);\n"
    "    System.out.println(v.size());\n  }\n}\n",
    "go": 'package main\n\nimport "fmt"\n\nfunc main() {\n\tv := [][]byte{}\n'
    "\tfor i := 0; i < 64; i++ {\n\t\tb := make([]byte, 32<<20)\n"
    "\t\tfor j := range b {\n\t\t\tb[j] = 1\n\t\t}\n\t\tv = append(v, b)\n\t}\n"
    "\tfmt.Println(len(v))\n}\n",
    "rust": "fn main() {\n    let mut v = Vec::new();\n"
    "    for _ in 0..64 { v.push(vec![1u8; 32 << 20]); }\n"
    '    println!("{}", v.len());\n}\n',
    "nodejs": "const v = [];\nfor (let i = 0; i < 64; i++) v.push(Buffer.alloc(32 << 20, 1));\n"
    "console.log(v.length);\n",
    "typescript": "declare var Buffer: any;\nconst v: any[] = [];\n"
    "for (let i = 0; i < 64; i++) v.push(Buffer.alloc(32 << 20, 1));\nconsole.log(v.length);\n",
    "php": '<?php\n$v = [];\nfor ($i = 0; $i < 64; $i++) $v[] = str_repeat("x", 32 << 20);\n'
    "echo count($v);\n",
    "ruby": 'v = []\n64.times { v << ("x" * (32 << 20)) }\nputs v.size\n',
    "lua": 'local v = {}\nfor i = 1, 64 do v[i] = string.rep("x", 32 << 20) .. i end\nprint(#v)\n',
    "perl": 'my @v;\nfor my $i (1..64) { push @v, "x" x (32 << 20); }\nprint scalar(@v), "\\n";\n',
    "R": "v <- list()\nfor (i in 1:64) v[[i]] <- rep(as.raw(1), 32 * 2^20)\ncat(length(v))\n",
    "csharp": "using System;\nusing System.Collections.Generic;\nclass Program {\n"
    "  static void Main() {\n    var v = new List<byte[]>();\n"
    "    for (int i = 0; i < 64; i++) { var b = new byte[32 << 20]; b[b.Length - 1] = 1;"
    " v.Add(b); }\n    Console.WriteLine(v.Count);\n  }\n}\n",
    "scala": "object Main {\n  def main(a: Array[String]): Unit = {\n"
    "    val v = scala.collection.mutable.ArrayBuffer[Array[Byte]]()\n"
    "    for (i <- 0 until 64) v += new Array[Byte](32 << 20)\n    println(v.size)\n  }\n}\n",
    "racket": "#lang racket\n(define v (for/list ([i 64]) (make-bytes (* 32 1024 1024) 1)))\n"
    "(displayln (length v))\n",
    "verilog": None,
}

# print ~64 MiB
FLOOD = {
    "c": "#include <stdio.h>\nint main(void) { for (long i = 0; i < (1L << 26) / 8; i++)"
    ' fputs("xxxxxxx\\n", stdout); return 0; }\n',
    "cpp": "#include <bits/stdc++.h>\nint main() { std::string s(1 << 20, 'x');"
    " for (int i = 0; i < 64; i++) std::cout << s; }\n",
    "java": "public class Main {\n  public static void main(String[] a) {\n"
    '    String s = "x".repeat(1 << 20);\n'
    "    for (int i = 0; i < 64; i++) System.out.print(s);\n  }\n}\n",
    "go": 'package main\n\nimport (\n\t"os"\n\t"strings"\n)\n\nfunc main() {\n'
    '\ts := strings.Repeat("x", 1<<20)\n\tfor i := 0; i < 64; i++ {\n'
    "\t\tos.Stdout.WriteString(s)\n\t}\n}\n",
    "rust": 'use std::io::Write;\nfn main() {\n    let s = "x".repeat(1 << 20);\n'
    "    let mut o = std::io::stdout();\n"
    "    for _ in 0..64 { o.write_all(s.as_bytes()).unwrap(); }\n}\n",
    "nodejs": 'const s = "x".repeat(1 << 20);\nfor (let i = 0; i < 64; i++) '
    'require("fs").writeSync(1, s);\n',
    "typescript": 'declare var require: any;\nconst s: string = "x".repeat(1 << 20);\n'
    'for (let i = 0; i < 64; i++) require("fs").writeSync(1, s);\n',
    "php": '<?php\n$s = str_repeat("x", 1 << 20);\nfor ($i = 0; $i < 64; $i++) echo $s;\n',
    "ruby": 's = "x" * (1 << 20)\n64.times { STDOUT.write(s) }\n',
    "lua": 'local s = string.rep("x", 1 << 20)\nfor i = 1, 64 do io.write(s) end\n',
    "perl": 'my $s = "x" x (1 << 20);\nprint $s for 1..64;\n',
    "R": 's <- strrep("x", 2^20)\nfor (i in 1:64) cat(s)\n',
    "csharp": "using System;\nclass Program {\n  static void Main() {\n"
    "    var s = new string('x', 1 << 20);\n"
    "    for (int i = 0; i < 64; i++) Console.Out.Write(s);\n  }\n}\n",
    "scala": "object Main {\n  def main(a: Array[String]): Unit = {\n"
    '    val s = "x" * (1 << 20)\n    for (i <- 0 until 64) print(s)\n  }\n}\n',
    "racket": "#lang racket\n(define s (make-string (* 1024 1024) #\\x))\n"
    "(for ([i 64]) (write-string s))\n",
    "verilog": "module main;\n  integer i;\n  initial begin\n"
    '    for (i = 0; i < 4000000; i = i + 1) $display("xxxxxxxxxxxxxxx");\n'
    "    $finish;\n  end\nendmodule\n",
}

# read in.txt (a line), write it reversed... simply: copy it upper-cased to out.txt
FILES = {
    "c": "#include <stdio.h>\n#include <ctype.h>\nint main(void) {\n"
    '  FILE *i = fopen("in.txt", "r"), *o = fopen("out.txt", "w"); int c;\n'
    "  while ((c = fgetc(i)) != EOF) fputc(toupper(c), o);\n  fclose(o); return 0;\n}\n",
    "cpp": '#include <bits/stdc++.h>\nint main() {\n  std::ifstream i("in.txt");'
    ' std::ofstream o("out.txt");\n  std::string s; std::getline(i, s);\n'
    '  for (auto &c : s) c = toupper(c);\n  o << s << "\\n";\n}\n',
    "java": "import java.nio.file.*;\npublic class Main {\n"
    "  public static void main(String[] a) throws Exception {\n"
    '    String s = Files.readString(Path.of("in.txt"));\n'
    '    Files.writeString(Path.of("out.txt"), s.toUpperCase());\n  }\n}\n',
    "go": 'package main\n\nimport (\n\t"os"\n\t"strings"\n)\n\nfunc main() {\n'
    '\tb, _ := os.ReadFile("in.txt")\n'
    '\tos.WriteFile("out.txt", []byte(strings.ToUpper(string(b))), 0o644)\n}\n',
    "rust": "fn main() {\n"
    '    let s = std::fs::read_to_string("in.txt").unwrap();\n'
    '    std::fs::write("out.txt", s.to_uppercase()).unwrap();\n}\n',
    "nodejs": 'const fs = require("fs");\n'
    'fs.writeFileSync("out.txt", fs.readFileSync("in.txt", "utf8").toUpperCase());\n',
    "typescript": 'declare var require: any;\nconst fs = require("fs");\n'
    'fs.writeFileSync("out.txt", fs.readFileSync("in.txt", "utf8").toUpperCase());\n',
    "php": '<?php\nfile_put_contents("out.txt", strtoupper(file_get_contents("in.txt")));\n',
    "ruby": 'File.write("out.txt", File.read("in.txt").upcase)\n',
    "lua": 'local s = io.open("in.txt"):read("a")\nlocal o = io.open("out.txt", "w")\n'
    "o:write(s:upper())\no:close()\n",
    "perl": 'open(my $i, "<", "in.txt"); open(my $o, ">", "out.txt");\n'
    "print $o uc(join('', <$i>));\nclose($o);\n",
    "R": 's <- readChar("in.txt", file.info("in.txt")$size)\n'
    'writeChar(toupper(s), "out.txt", eos = NULL)\n',
    "csharp": "using System.IO;\nclass Program {\n  static void Main() {\n"
    '    File.WriteAllText("out.txt", File.ReadAllText("in.txt").ToUpper());\n  }\n}\n',
    "scala": "import java.nio.file._\nobject Main {\n  def main(a: Array[String]): Unit = {\n"
    '    val s = new String(Files.readAllBytes(Paths.get("in.txt")))\n'
    '    Files.write(Paths.get("out.txt"), s.toUpperCase.getBytes)\n  }\n}\n',
    "racket": '#lang racket\n(define s (file->string "in.txt"))\n'
    '(with-output-to-file "out.txt" (lambda () (write-string (string-upcase s))))\n',
    "verilog": None,
}

LANGUAGE_NAMES = sorted(HELLO)
