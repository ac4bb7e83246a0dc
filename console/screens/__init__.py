"""The console's screens, one module each (Textual modes of `console.app.ConsoleApp`)."""
