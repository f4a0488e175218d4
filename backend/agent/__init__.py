"""The agent: prompt building, tools, the Groq client and the run loop."""
