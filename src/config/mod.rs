//! OpenVPN config language: lexer, typed directives, macro expansion, ccd files.
