# Writes a C++ source defining `std::string_view <NAME>()` with the bytes of the file INPUT, so that
# a program carries another one inside it. Run as: cmake -DINPUT=… -DOUTPUT=… -DNAME=… -P this.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "'\\\\x\\1'," bytes "${hex}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_binary.cmake; do not edit.\n"
  "#include <string_view>\n\n"
  "namespace {\nconst char kBytes[] = {${bytes}};\n}  // namespace\n\n"
  "namespace ${NAMESPACE} {\n"
  "std::string_view ${NAME}() { return std::string_view(kBytes, ${size}); }\n"
  "}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
